package smtpfront

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"appliance/smime"
)

func TestCheckMailbox(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		addr string
		ok   bool
	}{
		{"ok plain", "alice@example.test", true},
		{"ok atext", "a.b+c_d!#$%&'*/=?^`{|}~-@example.test", true},
		{"ok ipv4 literal", "a@[192.0.2.1]", true},
		{"ok ipv6 literal", "a@[IPv6:2001:db8::1]", true},
		{"ok single label", "postmaster@localhost", true},
		{"fail no at", "alice", false},
		{"fail empty local", "@example.test", false},
		{"fail empty domain", "alice@", false},
		{"fail two ats", "a@b@example.test", false},
		{"fail double dot", "a..b@example.test", false},
		{"fail leading dot", ".a@example.test", false},
		{"fail trailing dot domain", "a@example.test.", false},
		{"fail underscore domain", "a@exa_mple.test", false},
		{"fail hyphen label", "a@-x.test", false},
		{"fail space in local", "a b@example.test", false},
		{"fail non-ascii", "jörg@example.test", false},
		{"fail bad ipv4 literal", "a@[300.0.0.1]", false},
		{"fail ipv6 without tag", "a@[2001:db8::1]", false},
		{"fail unterminated literal", "a@[192.0.2.1", false},
		{"fail local too long", strings.Repeat("a", 65) + "@example.test", false},
		{"fail label too long", "a@" + strings.Repeat("b", 64) + ".test", false},
		{"fail path too long", "a@" + strings.Repeat("b.", 130) + "test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := checkMailbox(tt.addr)
			if (err == nil) != tt.ok {
				t.Fatalf("checkMailbox(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrBadAddress) {
				t.Errorf("error %v is not ErrBadAddress", err)
			}
		})
	}
}

func TestCRLFReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"ok empty", "", ""},
		{"ok crlf kept", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"ok bare lf", "a\nb\n", "a\r\nb\r\n"},
		{"ok bare cr", "a\rb\r", "a\r\nb\r\n"},
		{"ok cr cr lf", "a\r\r\n", "a\r\n\r\n"},
		{"ok lf cr", "a\n\rb", "a\r\n\r\nb"},
		{"ok eight bit", "\xff\xfe\x00\r\n", "\xff\xfe\x00\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// One byte at a time, so a CR and its LF arrive in different reads.
			got, err := io.ReadAll(newCRLFReader(iotest.OneByteReader(strings.NewReader(tt.in))))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			got, _ = io.ReadAll(newCRLFReader(strings.NewReader(tt.in)))
			if string(got) != tt.want {
				t.Errorf("whole: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestLimitReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		ok   bool
	}{
		{"ok under", 9, true},
		{"ok exact", 10, true},
		{"fail one over", 11, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &limitReader{r: strings.NewReader(strings.Repeat("x", tt.n)), max: 10}
			got, err := io.ReadAll(l)
			if tt.ok && (err != nil || len(got) != tt.n) {
				t.Fatalf("read %d, %v", len(got), err)
			}
			if !tt.ok && (!errors.Is(err, ErrMessageTooBig) || !errors.Is(l.err, ErrMessageTooBig)) {
				t.Fatalf("err = %v, want ErrMessageTooBig", err)
			}
		})
	}
}

func TestReadHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want error // nil: ok
		raw  string
	}{
		{"ok header and body", "A: 1\r\nB: 2\r\n\r\nbody\r\n", nil, "A: 1\r\nB: 2\r\n\r\n"},
		{"ok folded", "A: 1\r\n 2\r\n\r\n", nil, "A: 1\r\n 2\r\n\r\n"},
		{"ok no body", "A: 1\r\n", nil, "A: 1\r\n"},
		{"fail empty", "", ErrMalformedMessage, ""},
		{"fail body only", "\r\nbody\r\n", ErrMalformedMessage, ""},
		{"fail no colon", "A: 1\r\nnocolon\r\n\r\n", ErrMalformedMessage, ""},
		{"fail leading space", " A: 1\r\n\r\n", ErrMalformedMessage, ""},
		{"fail nul", "A: \x00\r\n\r\n", ErrMalformedMessage, ""},
		{"fail too big", "A: " + strings.Repeat("x", 100) + "\r\n\r\n", ErrMessageTooBig, ""},
		{"fail too big long line", "A: " + strings.Repeat("x", 5000), ErrMessageTooBig, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			max := 4096
			if strings.HasPrefix(tt.name, "fail too big") {
				max = 64
			}
			raw, _, err := readHeader(bufio.NewReaderSize(strings.NewReader(tt.in), 16), smime.Limits{MaxHeaderBytes: max})
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if string(raw) != tt.raw {
					t.Errorf("raw = %q, want %q", raw, tt.raw)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func FuzzCheckMailbox(f *testing.F) {
	for _, s := range []string{"alice@example.test", "a@[IPv6:::1]", "a@[1.2.3.4]", "a..b@c", "@", "a@b@c", "x@-y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := checkMailbox(s); err == nil {
			// Whatever passes is printable ASCII with one '@' outside a literal.
			for i := 0; i < len(s); i++ {
				if s[i] <= ' ' || s[i] >= 0x7f {
					t.Fatalf("accepted %q with byte %#x", s, s[i])
				}
			}
		}
	})
}

func FuzzCRLFReader(f *testing.F) {
	for _, s := range []string{"a\r\nb", "a\nb", "a\rb", "\r", "\n", "\r\r\n\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := io.ReadAll(newCRLFReader(iotest.HalfReader(bytes.NewReader(in))))
		if err != nil {
			t.Fatal(err)
		}
		// Every CR is followed by LF and every LF preceded by CR.
		for i, c := range got {
			if c == '\r' && (i+1 == len(got) || got[i+1] != '\n') {
				t.Fatalf("bare CR in %q", got)
			}
			if c == '\n' && (i == 0 || got[i-1] != '\r') {
				t.Fatalf("bare LF in %q", got)
			}
		}
		// Input already in canonical form is unchanged.
		if !bytes.ContainsAny(in, "\r\n") && !bytes.Equal(got, in) {
			t.Fatalf("changed %q to %q", in, got)
		}
	})
}
