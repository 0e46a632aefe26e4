package queue

import (
	"strings"
	"testing"
)

// headerSafe keeps a remote server's reply text from breaking the DSN: one
// line of printable ASCII, at most 900 bytes.
func TestHeaderSafe(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"ok printable kept", "550 5.1.1 <b@example.test> unknown ~", "550 5.1.1 <b@example.test> unknown ~"},
		{"ok line breaks and tabs become spaces", "550 no\r\nX-Injected: yes\tend", "550 no  X-Injected: yes end"},
		{"ok controls and non-ASCII become ?", "a\x00b\x1fc\x7fdé", "a?b?c?d?"},
		{"ok space and tilde are the edges", " ~", " ~"},
		{"ok 900 bytes kept", strings.Repeat("x", 900), strings.Repeat("x", 900)},
		{"ok longer cut to 900", strings.Repeat("y", 901), strings.Repeat("y", 900)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerSafe(tt.in); got != tt.want {
				t.Fatalf("headerSafe(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
