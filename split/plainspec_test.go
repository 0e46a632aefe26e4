package split

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/emersion/go-message/mail"
)

// TestPlainSpecAgreesWithNetMail: every string plainSpec lets past net/mail is one net/mail
// parses to itself, so Normalize and the envelope paths read it as before. The strings are
// drawn from the characters at the edge of the fast path's set (quotes, spaces, brackets,
// '@', dots, non-ASCII, specials), and from plain addresses with one such character put in.
func TestPlainSpecAgreesWithNetMail(t *testing.T) {
	fixed := []string{"bob@example.test", "a.b@c.d", ".a@b", "a.@b", "a..b@c", "a@.b", "a@b.", "a@b..c",
		"@b", "a@", "a@b@c", "A_B+c-d@Ex-Ample.TEST", "a@b_c", "a@-b", "a@b-", "a b@c", "a@[1.2.3.4]",
		"\"a\"@b", "a(x)@b", "<a@b>", "a@b ", " a@b", "é@b", "a@b\x00"}
	alphabet := []byte("ab.@_+-Z9 \"()<>[],;:\\\t\xc3\xa9=?!#$%&'*/^`{|}~")
	rnd := rand.New(rand.NewPCG(18, 10))
	for range 200000 {
		n := 1 + rnd.IntN(12)
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		fixed = append(fixed, string(b))
		plain := []byte("bob.x@mail.example.test")
		plain[rnd.IntN(len(plain))] = alphabet[rnd.IntN(len(alphabet))]
		fixed = append(fixed, string(plain))
	}
	fast := 0
	for _, s := range fixed {
		if !plainSpec(s) {
			continue
		}
		fast++
		a, err := mail.ParseAddress(s)
		if err != nil {
			t.Fatalf("plainSpec(%q) but net/mail refuses it: %v", s, err)
		}
		if a.Address != s || a.Name != "" {
			t.Fatalf("plainSpec(%q) but net/mail reads %q (name %q)", s, a.Address, a.Name)
		}
	}
	if fast < 1000 {
		t.Fatalf("only %d strings took the fast path: the test no longer covers it", fast)
	}
}

// TestNormalizeSpecSame: an address already in normal form comes back as the same string, and
// one that is not is normalized as before.
func TestNormalizeSpecSame(t *testing.T) {
	for _, c := range []struct {
		in   string
		cs   bool
		want string
	}{
		{"bob@example.test", false, "bob@example.test"},
		{"Bob@Example.TEST.", false, "bob@example.test"},
		{"Bob@Example.TEST", true, "Bob@example.test"},
		{"bob@example.test.", false, "bob@example.test"},
	} {
		got, err := normalizeSpec(c.in, c.cs)
		if err != nil || got != c.want {
			t.Errorf("normalizeSpec(%q, %v) = %q, %v; want %q", c.in, c.cs, got, err, c.want)
		}
		if strings.HasSuffix(c.in, ".") {
			continue // net/mail refuses a domain ending in a dot
		}
		if n, err := Normalize(c.in, c.cs); err != nil || n != c.want {
			t.Errorf("Normalize(%q, %v) = %q, %v; want %q", c.in, c.cs, n, err, c.want)
		}
	}
}

// TestParseAddressListAgreesWithNetMail: parseAddressList reads every list as net/mail does,
// the lists of plain addresses it reads itself included.
func TestParseAddressListAgreesWithNetMail(t *testing.T) {
	parts := []string{"bob@example.test", "a.b@c.d", "Carol <carol@y.test>", "x@y.test (c)", "", " ", "\t",
		"a..b@c", "\"q\"@x.test", "a@b.", "é@x.test", "=?utf-8?q?x?= <x@y.test>", "g: a@b;", "a@b c@d", "@", ","}
	rnd := rand.New(rand.NewPCG(18, 11))
	fast := 0
	for range 50000 {
		var b strings.Builder
		for i := range 1 + rnd.IntN(4) {
			if i > 0 {
				b.WriteString([]string{",", ", ", " ,", ",\t", ",,"}[rnd.IntN(5)])
			}
			b.WriteString(parts[rnd.IntN(len(parts))])
		}
		v := b.String()
		want, werr := mail.ParseAddressList(v)
		got, gerr := parseAddressList(v)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: net/mail err %v, parseAddressList err %v", v, werr, gerr)
		}
		if len(got) != len(want) {
			t.Fatalf("%q: %d addresses, net/mail %d", v, len(got), len(want))
		}
		for i := range got {
			if *got[i] != *want[i] {
				t.Fatalf("%q: address %d is %+v, net/mail %+v", v, i, *got[i], *want[i])
			}
		}
		if werr == nil && !strings.ContainsAny(v, "<(\"=:") {
			fast++
		}
	}
	if fast < 1000 {
		t.Fatalf("only %d plain lists: the test no longer covers the fast path", fast)
	}
}
