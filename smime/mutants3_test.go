package smime

// Tests that kill mutants scripts/mutation.sh found living in smime's files other than
// classify.go, normalize.go and sevenbit.go (the smime-head target; docs/testing.md, "Mutation
// testing").

import (
	"bytes"
	"errors"
	"testing"

	"github.com/emersion/go-message/textproto"

	"appliance/cms"
)

// TestEnvelopeHeadOriginatorInfo: an EnvelopedData with an originatorInfo keeps it in the head
// envelopeHead returns; one that runs past the input is reported short.
func TestEnvelopeHeadOriginatorInfo(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	envOID := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	dataOID := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	aesOID := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a}
	version := []byte{0x02, 0x01, 0x02}
	orig := m2TLV(0xa0, m2TLV(0xa1, m2TLV(0x30, []byte{0x02, 0x01, 0x07}))) // crls [1], one "CRL"
	ris := m2TLV(0x31, m2TLV(0x30, []byte{0x02, 0x01, 0x00}))
	alg := m2TLV(0x30, cat(aesOID, m2TLV(0x04, bytes.Repeat([]byte{1}, 16))))
	eci := m2TLV(0x30, cat(dataOID, alg, m2TLV(0x80, bytes.Repeat([]byte{2}, 32))))
	der := m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, orig, ris, eci)))))
	want := m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, orig, ris, m2TLV(0x30, cat(dataOID, alg)))))))
	head, err := envelopeHead(der, false)
	if err != nil || !bytes.Equal(head, want) {
		t.Fatalf("with originatorInfo: % x, %v; want % x", head, err, want)
	}
	// The originatorInfo's length runs past the input.
	cut := cat(m2TLV(0x30, cat(envOID, m2TLV(0xa0, m2TLV(0x30, cat(version, []byte{0xa0, 0x7f}))))))
	if head, err := envelopeHead(cut, false); !errors.Is(err, errShort) {
		t.Errorf("originatorInfo past the end: % x, %v; want %v", head, err, errShort)
	}
}

// TestBerLenZeroTagChild: inside an indefinite-length element, a child with tag 0 after one
// ending in a zero octet is a child, not the end-of-contents octets.
func TestBerLenZeroTagChild(t *testing.T) {
	in := []byte{0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x01, 0x05, 0x00, 0x00}
	if n, err := berLen(in, 0); err != nil || n != len(in) {
		t.Errorf("berLen: %d, %v; want %d", n, err, len(in))
	}
}

// TestContentTypeQuotedPairs: quoted pairs in quoted strings are kept, in comments skipped (an
// escaped parenthesis does not end one), a backslash at the very end is unterminated, a
// parenthesis inside a quoted string is text, and a comment separates what is on either side.
func TestContentTypeQuotedPairs(t *testing.T) {
	for _, tt := range []struct {
		in, param, want string
	}{
		{`text/plain (c); a="x\"y"`, "a", `x"y`},
		{`text/plain (c \) still c \( \\); a=1`, "a", "1"},
		{`text/plain (c); a="x(y)z"`, "a", "x(y)z"},
		{`text/plain;(c)a=b(c (nested) c)`, "a", "b"},
	} {
		mt, params, err := ParseContentType(tt.in)
		if err != nil || mt != "text/plain" || params[tt.param] != tt.want {
			t.Errorf("%s: %q %q, %v; want %s=%q", tt.in, mt, params, err, tt.param, tt.want)
		}
	}
	for _, in := range []string{`text/plain (c); a="x\`, `text/plain (c \`, `text/pl(c)ain`, `text/plain (c) (`} {
		if mt, params, err := ParseContentType(in); !errors.Is(err, ErrContentType) {
			t.Errorf("%s: %q %q, %v; want %v", in, mt, params, err, ErrContentType)
		}
	}
}

// TestUnfoldCRAtEnd: a raw field without its CRLF (as AddRaw takes one) that ends in a bare CR
// has that CR made a space too.
func TestUnfoldCRAtEnd(t *testing.T) {
	for in, want := range map[string]string{
		"X-A: a\r":       "X-A: a ",
		"X-A: a\rb\r\n":  "X-A: a b\r\n",
		"X-A: a\r\n b\r": "X-A: a\r\n b ",
	} {
		if got := unfoldCR([]byte(in)); string(got) != want {
			t.Errorf("unfoldCR(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestIsContentFieldPrefixOnly: "Content-" alone names no Content-* field.
func TestIsContentFieldPrefixOnly(t *testing.T) {
	for k, want := range map[string]bool{"Content-": false, "content-x": true, "Content": false} {
		if got := IsContentField(k); got != want {
			t.Errorf("IsContentField(%q) = %v, want %v", k, got, want)
		}
	}
}

// TestWriteOuterAddsCRLF: a field added without its line ending is written with one.
func TestWriteOuterAddsCRLF(t *testing.T) {
	var h textproto.Header
	h.AddRaw([]byte("X-B: b\r\n"))
	h.AddRaw([]byte("X-A: a"))
	var b bytes.Buffer
	if err := writeOuter(&b, h); err != nil || b.String() != "X-A: a\r\nX-B: b\r\n" {
		t.Errorf("writeOuter: %q, %v", b.String(), err)
	}
}

// TestListEnvelopeSameContent: members' envelopes of one encrypted content are taken, whether
// their shared pieces are the same memory or equal bytes; an envelope of another content of the
// same length is refused.
func TestListEnvelopeSameContent(t *testing.T) {
	ri := func(b byte) []*cms.RecipientInfo {
		return []*cms.RecipientInfo{{Raw: append([]byte{0x30, 0x10}, bytes.Repeat([]byte{b}, 16)...)}}
	}
	ec := func(fill byte) *cms.EncryptedContent {
		return &cms.EncryptedContent{Algorithm: cms.AES256CBC, IV: bytes.Repeat([]byte{7}, 16), Ciphertext: bytes.Repeat([]byte{fill}, 100)}
	}
	first := ec(1)
	sp := newListParts(nil, "b", TypeEnvelopedData, nil)
	for i, c := range []*cms.EncryptedContent{first, first, ec(1), ec(2)} {
		der, err := cms.Envelope(c, ri(byte(i)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = sp.envelope(der)
		if i < 3 && err != nil {
			t.Errorf("envelope %d: %v", i, err)
		}
		if i == 3 && err == nil {
			t.Error("an envelope of other content of the same length shares the first one's tail")
		}
	}
}

// TestTailNilWithinLine: a tail that ends before the first line boundary after own has no
// cached lines: Tail is nil, and WriteHead wrote it all. A longer one has them.
func TestTailNilWithinLine(t *testing.T) {
	own := []byte{0x30}
	for n, wantTail := range map[int]bool{10: false, LineLength/4*3 - 1: false, 200: true} {
		tail := bytes.Repeat([]byte{0xa5}, n)
		s := NewSharedBase64([][]byte{tail})
		if got := s.Tail(own) != nil; got != wantTail {
			t.Errorf("%d-byte tail: Tail non-nil %v, want %v", n, got, wantTail)
		}
		var got, want bytes.Buffer
		if err := s.WriteBase64(&got, own); err != nil {
			t.Fatal(err)
		}
		enc := NewBase64Writer(&want)
		enc.Write(own)
		enc.Write(tail)
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Errorf("%d-byte tail: WriteBase64 %q, want %q", n, got.Bytes(), want.Bytes())
		}
	}
}
