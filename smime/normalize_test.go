package smime

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestNormalize(t *testing.T) {
	long := strings.Repeat("a", 2000)
	tests := []struct {
		name, in, want string
		lim            Limits
		refused        string // the refusal's text; "" accepts
		tooBig         bool
	}{
		{name: "ok canonical kept", in: "From: a@b.test\r\n\r\nbody\r\n", want: "From: a@b.test\r\n\r\nbody\r\n"},
		{name: "ok bare lf", in: "From: a@b.test\n\nbody\nmore\n", want: "From: a@b.test\r\n\r\nbody\r\nmore\r\n"},
		{name: "ok bare cr", in: "From: a@b.test\r\rbody\rmore", want: "From: a@b.test\r\n\r\nbody\r\nmore"},
		{name: "ok cr at the end", in: "From: a@b.test\r\n\r\nbody\r", want: "From: a@b.test\r\n\r\nbody\r\n"},
		{name: "ok mixed", in: "From: a@b.test\r\nSubject: x\n\r\nb\r\r\n", want: "From: a@b.test\r\nSubject: x\r\n\r\nb\r\n\r\n"},
		{name: "ok 8-bit header text and a nul in the body pass", in: "From: a@b.test\r\nSubject: \xff\xc3\xa9\r\n\r\n\x00\r\n", want: "From: a@b.test\r\nSubject: \xff\xc3\xa9\r\n\r\n\x00\r\n"},
		{name: "ok line at the limit", in: "From: a@b.test\r\n\r\n" + long + "\r\n", want: "From: a@b.test\r\n\r\n" + long + "\r\n"},
		{name: "ok header only", in: "From: a@b.test\r\n", want: "From: a@b.test\r\n"},
		{name: "fail line over the limit", in: "From: a@b.test\r\n\r\n" + long + "a\r\n", refused: "line longer than 2000 octets"},
		{name: "fail last line over the limit", in: "From: a@b.test\r\n\r\n" + long + "a", refused: "line longer than 2000 octets"},
		{name: "fail line over a set limit", in: "From: a@b.test\r\n\r\n" + strings.Repeat("b", 1001) + "\n", lim: Limits{MaxLineLength: 1000}, refused: "line longer than 1000 octets"},
		{name: "fail nul in header", in: "From: a@b.test\r\nSubject: a\x00b\r\n\r\nbody\r\n", refused: "message header contains NUL"},
		{name: "fail no header", in: "\r\nbody\r\n", refused: "message has no header"},
		{name: "fail empty", in: "", refused: "message has no header"},
		{name: "fail malformed header", in: "From: a@b.test\nno colon\n\nbody\n", refused: "malformed message header"},
		{name: "fail header starts with white space", in: " From: a@b.test\n\nbody\n", refused: "malformed message header"},
		{name: "fail too many fields", in: "From: a@b.test\nA: 1\nB: 2\n\n", lim: Limits{MaxHeaderFields: 2}, refused: "too many header fields"},
		{name: "fail header too big", in: "From: a@b.test\nA: " + strings.Repeat("x", 100) + "\n\n", lim: Limits{MaxHeaderBytes: 64}, refused: "header longer than 64 octets", tooBig: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, h, err := Normalize([]byte(tt.in), tt.lim)
			if tt.refused != "" {
				var re *RefusedError
				if !errors.As(err, &re) || !errors.Is(err, ErrRefused) || re.Text != tt.refused || re.TooBig != tt.tooBig {
					t.Fatalf("Normalize() error = %v, want refusal %q", err, tt.refused)
				}
				return
			}
			if err != nil || string(got) != tt.want || h.Get("From") != "a@b.test" {
				t.Fatalf("Normalize() = %q, %v; want %q", got, err, tt.want)
			}
			again, _, err := Normalize(got, tt.lim)
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("not idempotent: %q, %v", again, err)
			}
			// The streaming reader (serve's door) gives the same bytes in
			// any chunking.
			for _, r := range []io.Reader{iotest.OneByteReader(strings.NewReader(tt.in)), iotest.HalfReader(strings.NewReader(tt.in))} {
				s, err := io.ReadAll(NewNormalizer(r, tt.lim))
				if err != nil || !bytes.Equal(s, got) {
					t.Fatalf("stream = %q, %v; want %q", s, err, got)
				}
			}
		})
	}
}

// TestNormalizerLineLimitChunked: the line limit holds however the bytes
// arrive, CR and LF split across reads included.
func TestNormalizerLineLimitChunked(t *testing.T) {
	for _, n := range []int{9, 10, 11} {
		for _, end := range []string{"\r\n", "\n", "\r"} {
			in := "H: v\r\n\r\n" + strings.Repeat("x", n) + end + "y\r\n"
			_, err := io.ReadAll(NewNormalizer(iotest.OneByteReader(strings.NewReader(in)), Limits{MaxLineLength: 10}))
			if (err != nil) != (n > 10) {
				t.Fatalf("line of %d ending %q: err = %v", n, end, err)
			}
		}
	}
}
