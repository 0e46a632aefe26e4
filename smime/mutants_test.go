package smime

// Tests that kill mutants scripts/mutation.sh found living in normalize.go: each limit holds
// at exactly its value and refuses one octet or field more (docs/testing.md, "Mutation
// testing").

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestLimitsExact(t *testing.T) {
	header := func(fields int) []byte {
		var b strings.Builder
		for i := range fields {
			fmt.Fprintf(&b, "X-F%d: v\r\n", i)
		}
		return []byte(b.String() + "\r\n")
	}
	five := header(5)
	tests := []struct {
		name    string
		raw     []byte
		lim     Limits
		wantErr string // "" accepts
	}{
		{"ok header of exactly MaxHeaderBytes", five, Limits{MaxHeaderBytes: len(five)}, ""},
		{"fail header one octet over MaxHeaderBytes", five, Limits{MaxHeaderBytes: len(five) - 1}, "header longer than"},
		{"ok exactly MaxHeaderFields", five, Limits{MaxHeaderFields: 5}, ""},
		{"fail one field over MaxHeaderFields", five, Limits{MaxHeaderFields: 4}, "too many header fields"},
		{"fail NUL as the first octet", append([]byte{0}, five...), Limits{}, "contains NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := CheckHeader(tt.raw, tt.lim)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want a refusal saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestLastLineExact: a last line without CRLF may be MaxLineLength octets long, not one more,
// also when the reader returns the last octets together with io.EOF.
func TestLastLineExact(t *testing.T) {
	const limit = 40
	for _, n := range []int{limit, limit + 1} {
		msg := "From: a@example.test\r\n\r\n" + strings.Repeat("x", n)
		_, _, err := Normalize([]byte(msg), Limits{MaxLineLength: limit})
		_, err2 := io.ReadAll(NewNormalizer(iotest.DataErrReader(strings.NewReader(msg)), Limits{MaxLineLength: limit}))
		for _, err := range []error{err, err2} {
			if n <= limit && err != nil {
				t.Fatalf("a last line of %d octets: %v", n, err)
			}
			if n > limit && !errors.Is(err, ErrRefused) {
				t.Fatalf("a last line of %d octets: %v, want a refusal", n, err)
			}
		}
	}
}

// TestLineExactSplitRead: a line of exactly MaxLineLength octets whose CR and LF reach the
// caller in two reads is not refused (the CR counts until its LF is seen).
func TestLineExactSplitRead(t *testing.T) {
	const limit = 40
	// The bare LF makes the chunk go through the rewriting path; a 41-byte buffer then cuts
	// the rewritten line after its CR.
	r := NewNormalizer(strings.NewReader(strings.Repeat("x", limit)+"\nend\r\n"), Limits{MaxLineLength: limit})
	var got []byte
	buf := make([]byte, limit+1)
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
	}
	if want := strings.Repeat("x", limit) + "\r\nend\r\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
