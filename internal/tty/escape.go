// Package tty keeps what the commands print safe and tidy on a terminal: text from messages,
// certificates and the directory escaped (no control sequence reaches the screen), and a
// progress line drawn only where a person is watching.
package tty

import (
	"fmt"
	"io"
	"strings"
	"unicode"
)

// Escape makes text from a message, a certificate or a command line safe to print on a
// terminal: control characters (C0, DEL, C1), bidirectional overrides and invalid UTF-8 become
// Go escapes (\x1b, \u202e), so a crafted subject or address cannot move the cursor, recolour
// the screen or reorder what an operator reads. Printable text, non-ASCII letters included,
// is left alone.
func Escape(s string) string {
	clean := true
	for _, r := range s {
		if unsafeRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == unicode.ReplacementChar && isInvalidAt(s, i):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r < 0x80 && unsafeRune(r):
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func isInvalidAt(s string, i int) bool {
	return len(s[i:]) > 0 && !strings.HasPrefix(s[i:], string(unicode.ReplacementChar))
}

func unsafeRune(r rune) bool {
	switch {
	case r == unicode.ReplacementChar:
		return true // may be invalid UTF-8; checked where it is
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true
	}
	return false
}

// EscapeLines escapes each line of s on its own: joined errors stay one per line.
func EscapeLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = Escape(l)
	}
	return strings.Join(lines, "\n")
}

// EscapingWriter passes text reports through [EscapeLines] (tabs kept): every line a command
// prints from messages, certificates or the directory is safe on a terminal, whatever printed
// it. Each Write must be whole lines or whole runes, as fmt's are.
func EscapingWriter(w io.Writer) io.Writer { return escapingWriter{w} }

type escapingWriter struct{ w io.Writer }

func (e escapingWriter) Write(p []byte) (int, error) {
	// Tabs stay: they are the reports' column separators.
	parts := strings.Split(string(p), "\t")
	for i, part := range parts {
		parts[i] = EscapeLines(part)
	}
	if _, err := io.WriteString(e.w, strings.Join(parts, "\t")); err != nil {
		return 0, err
	}
	return len(p), nil
}
