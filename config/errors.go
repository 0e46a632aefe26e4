package config

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Reasons carried by [*Error]; test with errors.Is.
var (
	ErrSyntax       = errors.New("invalid TOML")
	ErrUnknownKey   = errors.New("unknown key")
	ErrMissing      = errors.New("missing value")
	ErrInvalid      = errors.New("invalid value")
	ErrConflict     = errors.New("conflicting settings")
	ErrDuplicate    = errors.New("duplicate entry")
	ErrFile         = errors.New("unusable file")
	ErrPINFileMode  = errors.New("pin file readable by group or others")
	ErrPINEmpty     = errors.New("empty pin")
	ErrPINEnvNotSet = errors.New("pin environment variable not set")
)

// Error is one problem with one key. File is the configuration file ("" for [Parse]); Line is 0
// when the key does not appear in the file (a required key that is missing) or could not be
// located. It prints as FILE:LINE: key: reason: detail, the form editors jump to.
type Error struct {
	File   string
	Key    string
	Line   int
	Err    error // one of the Err* reasons above
	Detail string
}

func (e *Error) Error() string {
	if e.File != "" {
		where := e.File
		if e.Line > 0 {
			where += ":" + strconv.Itoa(e.Line)
		}
		if e.Key != "" {
			where += ": " + e.Key
		}
		if e.Detail == "" {
			return fmt.Sprintf("%s: %v", where, e.Err)
		}
		return fmt.Sprintf("%s: %v: %s", where, e.Err, e.Detail)
	}
	where := "config"
	switch {
	case e.Key != "" && e.Line > 0:
		where = fmt.Sprintf("config line %d: %s", e.Line, e.Key)
	case e.Key != "":
		where = "config: " + e.Key
	case e.Line > 0:
		where = fmt.Sprintf("config line %d", e.Line)
	}
	if e.Detail == "" {
		return fmt.Sprintf("%s: %v", where, e.Err)
	}
	return fmt.Sprintf("%s: %v: %s", where, e.Err, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

type validator struct {
	lines map[string]int
	errs  []error
}

func (v *validator) add(key string, reason error, format string, args ...any) {
	v.errs = append(v.errs, &Error{
		Key:    key,
		Line:   v.line(key),
		Err:    reason,
		Detail: fmt.Sprintf(format, args...),
	})
}

// line finds key, or for a key that is absent (a required one), the table
// it belongs in: "config line 2: hsm.module: missing value" points the
// operator at [hsm].
func (v *validator) line(key string) int {
	for k := key; k != ""; {
		if n, ok := v.lines[k]; ok {
			return n
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

// locate sets File on every [*Error] in err, and Line where it is unknown and lines knows the
// key (or its table).
func locate(err error, file string, lines map[string]int) {
	switch e := err.(type) {
	case nil:
	case *Error:
		e.File = file
		if e.Line == 0 && lines != nil {
			e.Line = (&validator{lines: lines}).line(e.Key)
		}
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			locate(x, file, lines)
		}
	}
}

// Locate names the file at path, and the line of each key, in the [*Error]s of err (from
// [Config.CheckFiles] or [Config.PIN] of a configuration read from path), and returns err.
func Locate(err error, path string) error {
	if err == nil {
		return nil
	}
	data, rerr := os.ReadFile(path)
	var lines map[string]int
	if rerr == nil {
		lines = keyLines(data)
	}
	locate(err, path, lines)
	return err
}
