package tty

import (
	"fmt"
	"strings"
	"testing"
)

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text", "plain text"},
		{"Grüße 東京", "Grüße 東京"},
		{"red\x1b[31m", `red\x1b[31m`},
		{"bell\a and del\x7f", `bell\x07 and del\x7f`},
		{"csi \u009b", `csi \u009b`},
		{"bidi \u202eevil", `bidi \u202eevil`},
		{"bad \xff utf-8", `bad \xff utf-8`},
		{"tab\tnewline\n", `tab\x09newline\x0a`},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestEscapingWriter(t *testing.T) {
	var b strings.Builder
	w := EscapingWriter(&b)
	fmt.Fprintf(w, "subject\t%s\n", "\x1b[2Jgone")
	if got, want := b.String(), "subject\t\\x1b[2Jgone\n"; got != want {
		t.Errorf("wrote %q, want %q (tabs and line ends kept, the rest escaped)", got, want)
	}
}
