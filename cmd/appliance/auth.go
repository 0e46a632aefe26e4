package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"appliance/auth"
)

// runHashPassword prints an argon2id hash for a users file line. The
// password is the first line of stdin, never an argument (ps would show
// it); from a shell: read -rs PW; printf '%s\n' "$PW" | appliance hash-password
func runHashPassword(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("hash-password", "< password", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("failed to read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return fmt.Errorf("%w: empty password on stdin", errUsage)
	}
	h, err := auth.HashPassword(pw, rand.Reader)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
