package main

import (
	"bufio"
	"bytes"
	"sort"
)

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

func sortStrings(s []string) { sort.Strings(s) }
