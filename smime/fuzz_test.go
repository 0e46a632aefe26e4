package smime

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func seedPackages(f *testing.F) {
	var b bytes.Buffer
	outer := outerHeader(f, "From: a@example.test\r\nSubject: =?utf-8?q?x?=\r\n")
	if err := WritePackage(&b, outer, TypeAuthEnvelopedData, bytes.NewReader(bytes.Repeat([]byte{0x30, 0x80, 0x01}, 100))); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes())
	f.Add([]byte("Content-Type: application/x-pkcs7-mime;\n smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\nMAM\nCAQ\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime\r\n\r\n0\x03\x02\x01\x05"))
	f.Add([]byte("Content-Type: application/octet-stream; name=a.p7m\r\nContent-Transfer-Encoding: 7bit\r\n\r\n  MA=="))
	f.Add(SignedEntity([]byte("Content-Type: text/plain\r\n\r\nhi\r\n"), []byte{0x30, 0}, "sha-256"))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/x-pkcs7-signature\"; boundary=b\n\n--b\nA: 1\n\nx\n--b\nContent-Type: application/x-pkcs7-signature\n\nMA\n  A\n--b--\n"))
	f.Add([]byte("From: a\nContent-Type: text/plain\nMIME-Version: 1.0\n\nbody\r\rx"))
}

func FuzzParse(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		const limit = 1 << 16
		p, err := Parse(bytes.NewReader(msg), limit)
		if err != nil {
			return
		}
		if len(p.DER) == 0 || len(p.DER) > limit {
			t.Fatalf("DER of %d bytes from %d bytes of input", len(p.DER), len(msg))
		}
		if p.SMIMEType == "" {
			return
		}
		var b bytes.Buffer
		if err := WritePackage(&b, textproto.Header{}, p.SMIMEType, bytes.NewReader(p.DER)); err != nil {
			t.Fatal(err)
		}
		q, err := Parse(&b, 1<<20)
		if err != nil || !bytes.Equal(q.DER, p.DER) || q.SMIMEType != p.SMIMEType {
			t.Fatalf("rewritten package does not read back: %v", err)
		}
	})
}

func FuzzParseSigned(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		s, err := ParseSigned(msg)
		if err != nil {
			return
		}
		again, err := ParseSigned(SignedEntity(s.Content, s.Signature, "sha-256"))
		if err != nil || !bytes.Equal(again.Content, s.Content) || !bytes.Equal(again.Signature, s.Signature) {
			t.Fatalf("re-signed entity does not read back: %v", err)
		}
	})
}

func FuzzSplit(f *testing.F) {
	seedPackages(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		outer, inner, err := Split(bytes.NewReader(msg))
		if err != nil {
			return
		}
		if !isCanonical(inner) {
			t.Fatalf("entity %q is not canonical", inner)
		}
		for fields := outer.Fields(); fields.Next(); {
			if IsContentField(fields.Key()) {
				t.Fatalf("outer header kept %q", fields.Key())
			}
		}
		h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(inner)))
		if err != nil || !h.Has("Content-Type") {
			t.Fatalf("entity header does not read back: %v", err)
		}
	})
}
