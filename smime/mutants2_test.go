package smime

// Tests that kill mutants scripts/mutation.sh found living in smime's files other than
// normalize.go and sevenbit.go (the smime-rest target; docs/testing.md, "Mutation testing").

import (
	"bytes"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// m2TLV is a DER element of tag over body.
func m2TLV(tag byte, body []byte) []byte {
	n := len(body)
	switch {
	case n < 0x80:
		return append([]byte{tag, byte(n)}, body...)
	case n < 0x100:
		return append([]byte{tag, 0x81, byte(n)}, body...)
	default:
		return append([]byte{tag, 0x82, byte(n >> 8), byte(n)}, body...)
	}
}

// m2ContentInfo is a ContentInfo of content type oid (the OID's contents octets) over an
// INTEGER 0: enough for cms.Sniff.
func m2ContentInfo(oid []byte) []byte {
	body := append([]byte{0x06, byte(len(oid))}, oid...)
	body = append(body, 0xa0, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00)
	return append([]byte{0x30, byte(len(body))}, body...)
}

var (
	m2Enveloped = m2ContentInfo([]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03})
	m2AuthEnv   = m2ContentInfo([]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17})
	m2Signed    = m2ContentInfo([]byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02})
	// m2BigEnveloped is longer than a bufio.Reader's buffer, base64 or not.
	m2BigEnveloped = m2TLV(0x30, append([]byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03},
		m2TLV(0xa0, m2TLV(0x30, append([]byte{0x02, 0x01, 0x00}, m2TLV(0x04, make([]byte, 6000))...)))...))
)

// TestEnvelopeAtTop: ClassifyAs's short cut answers for a message that is one labelled
// envelope (so a client-encrypted message is not walked again) and for nothing else; a
// message it leaves to Classify gets the same classification either way, so only the short
// cut itself shows whether it was taken.
func TestEnvelopeAtTop(t *testing.T) {
	const hdr = "From: a@example.test\r\nMIME-Version: 1.0\r\n"
	b64 := func(der []byte) string { return base64.StdEncoding.EncodeToString(der) + "\r\n" }
	tests := []struct {
		name string
		msg  string
		der  []byte // nil: no answer
	}{
		{"ok enveloped-data in base64", hdr + "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), m2Enveloped},
		{"ok authEnveloped-data", hdr + "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2AuthEnv), m2AuthEnv},
		{"ok without a label, binary", hdr + "Content-Type: application/x-pkcs7-mime\r\n\r\n" + string(m2Enveloped), m2Enveloped},
		{"ok an envelope longer than the header reader's buffer", hdr + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2BigEnveloped), m2BigEnveloped},
		{"ok octet-stream named .p7m", hdr + "Content-Type: application/octet-stream; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), m2Enveloped},
		{"fail two Content-Type fields", hdr + "Content-Type: application/pkcs7-mime\r\nContent-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), nil},
		{"fail two Content-Transfer-Encoding fields", hdr + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), nil},
		{"fail labelled signed-data", hdr + "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), nil},
		{"fail SignedData", hdr + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Signed), nil},
		{"fail text", hdr + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(m2Enveloped), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := envelopeAtTop([]byte(tt.msg))
			if tt.der == nil {
				if c != nil {
					t.Fatalf("answered %v", c.Class)
				}
				return
			}
			if c == nil {
				t.Fatal("no answer")
			}
			if c.Class != ClientEncrypted || !bytes.Equal(c.Envelope, tt.der) || len(c.Layers) != 1 {
				t.Fatalf("got %v, %d bytes of envelope, %d layers", c.Class, len(c.Envelope), len(c.Layers))
			}
			if full := Classify([]byte(tt.msg)); full.Class != ClientEncrypted || full.EnvelopeType != c.EnvelopeType {
				t.Fatalf("Classify: %v %q, short cut %q", full.Class, full.EnvelopeType, c.EnvelopeType)
			}
		})
	}
}

// TestClassifyDepthExact: a message nested exactly classifyMaxDepth entities deep, in
// message/rfc822, multipart/mixed or multipart/signed entities, is classified; one more level
// is refused as malformed.
func TestClassifyDepthExact(t *testing.T) {
	wraps := map[string]func(inner string, i int) string{
		"message/rfc822": func(inner string, _ int) string { return "Content-Type: message/rfc822\r\n\r\n" + inner },
		"multipart/mixed": func(inner string, i int) string {
			b := fmt.Sprintf("b%d", i)
			return "Content-Type: multipart/mixed; boundary=" + b + "\r\n\r\n--" + b + "\r\n" + inner + "\r\n--" + b + "--\r\n"
		},
		"multipart/signed": func(inner string, i int) string {
			b := fmt.Sprintf("s%d", i)
			return "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=" + b + "\r\n\r\n--" + b + "\r\n" +
				inner + "\r\n--" + b + "\r\nContent-Type: application/pkcs7-signature\r\n\r\nx\r\n--" + b + "--\r\n"
		},
	}
	for name, wrap := range wraps {
		for _, n := range []int{classifyMaxDepth, classifyMaxDepth + 1} {
			msg := "Content-Type: text/plain\r\n\r\nhello\r\n"
			for i := range n {
				msg = wrap(msg, i)
			}
			msg = "From: a@example.test\r\n" + msg
			c := Classify([]byte(msg))
			if n <= classifyMaxDepth && c.Class != Plain {
				t.Fatalf("%s, %d levels: %v (%s), want plain", name, n, c.Class, c.Reason)
			}
			if n > classifyMaxDepth && (c.Class != Refused || !c.Malformed || !strings.Contains(c.Reason, "nested deeper")) {
				t.Fatalf("%s, %d levels: %v (%s), want refused as nested too deep", name, n, c.Class, c.Reason)
			}
		}
	}
}

// TestClassifyPartsExact: a message of exactly classifyMaxParts MIME parts is classified, one
// part more is refused as malformed.
func TestClassifyPartsExact(t *testing.T) {
	for _, n := range []int{classifyMaxParts, classifyMaxParts + 1} {
		var b strings.Builder
		b.WriteString("From: a@example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
		for range n {
			b.WriteString("--b\r\n\r\nx\r\n")
		}
		b.WriteString("--b--\r\n")
		c := Classify([]byte(b.String()))
		if n <= classifyMaxParts && c.Class != Plain {
			t.Fatalf("%d parts: %v (%s), want plain", n, c.Class, c.Reason)
		}
		if n > classifyMaxParts && (c.Class != Refused || !c.Malformed || !strings.Contains(c.Reason, "MIME parts")) {
			t.Fatalf("%d parts: %v (%s), want refused for too many parts", n, c.Class, c.Reason)
		}
	}
}

// TestPrintableBounds: a label quoted in a refusal keeps its first 64 octets and the printable
// ASCII range 0x20 to 0x7e, each bound exactly.
func TestPrintableBounds(t *testing.T) {
	s64 := strings.Repeat("a", 64)
	tests := []struct{ in, want string }{
		{s64, s64},
		{s64 + "b", s64},
		{"\x1f \x7e\x7f", "? ~?"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestLooseBase64Bounds: eight base64 characters are the least looseBase64 decodes; seven
// are not taken for base64.
func TestLooseBase64Bounds(t *testing.T) {
	if out, ok := looseBase64([]byte("MIIB AAAA\r\n")); !ok || !bytes.Equal(out, []byte{0x30, 0x82, 0x01, 0x00, 0x00, 0x00}) {
		t.Errorf("eight characters: %x, %v", out, ok)
	}
	if _, ok := looseBase64([]byte("MIIBAAA")); ok {
		t.Error("seven characters taken for base64")
	}
	if _, ok := looseBase64([]byte("MIIBAAAA!")); ok {
		t.Error("a character outside base64 taken")
	}
}

// TestDerTLVLengths: derTLV's length octets are DER's at each size where the form changes.
func TestDerTLVLengths(t *testing.T) {
	for _, n := range []int{0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffff, 0x1000000} {
		body := make([]byte, n)
		want, err := asn1.Marshal(body) // an OCTET STRING
		if err != nil {
			t.Fatal(err)
		}
		// In two pieces, so the length is the sum of the contents.
		got := derTLV(0x04, body[:n/2], body[n/2:])
		if !bytes.Equal(got[:len(got)-n], want[:len(want)-n]) || len(got) != len(want) {
			t.Errorf("%d octets: header %x, want %x", n, got[:min(len(got), 6)], want[:min(len(want), 6)])
		}
	}
}

// TestBerHeaderBounds: berHeader at each bound of the length forms it reads.
func TestBerHeaderBounds(t *testing.T) {
	tests := []struct {
		name        string
		in          []byte
		hdr, length int
		err         error
	}{
		{"ok short form 127", []byte{0x30, 0x7f}, 2, 127, nil},
		{"ok indefinite", []byte{0x30, 0x80}, 2, -1, nil},
		{"fail indefinite primitive", []byte{0x04, 0x80}, 0, 0, errShape},
		{"ok long form 128", []byte{0x30, 0x81, 0x80}, 3, 128, nil},
		{"ok four length octets", []byte{0x30, 0x84, 0x01, 0x02, 0x03, 0x04}, 6, 0x01020304, nil},
		{"fail five length octets", []byte{0x30, 0x85, 0x01, 0x02, 0x03, 0x04, 0x05}, 0, 0, errShape},
		{"fail length octets cut", []byte{0x30, 0x82, 0x01}, 0, 0, errShort},
		{"fail high tag", []byte{0x1f, 0x01}, 0, 0, errShape},
		{"fail one octet", []byte{0x30}, 0, 0, errShort},
	}
	for _, tt := range tests {
		hdr, length, err := berHeader(tt.in)
		if hdr != tt.hdr || length != tt.length || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
			t.Errorf("%s: %d, %d, %v; want %d, %d, %v", tt.name, hdr, length, err, tt.hdr, tt.length, tt.err)
		}
	}
}

// TestBerLenBounds: an element that ends exactly where the input does has its length, one
// octet short is errShort; indefinite lengths nest classifyMaxDepth deep below the first, not
// one more.
func TestBerLenBounds(t *testing.T) {
	if n, err := berLen([]byte{0x04, 0x02, 0xaa, 0xbb}, 0); n != 4 || err != nil {
		t.Errorf("whole element: %d, %v", n, err)
	}
	if _, err := berLen([]byte{0x04, 0x02, 0xaa}, 0); !errors.Is(err, errShort) {
		t.Errorf("cut element: %v, want errShort", err)
	}
	if n, err := berLen([]byte{0x30, 0x80, 0x04, 0x00, 0x00, 0x00, 0xff}, 0); n != 6 || err != nil {
		t.Errorf("indefinite element: %d, %v", n, err)
	}
	if _, err := berLen([]byte{0x30, 0x80, 0x04, 0x00, 0x00}, 0); !errors.Is(err, errShort) {
		t.Errorf("end-of-contents cut: %v, want errShort", err)
	}
	for _, k := range []int{classifyMaxDepth, classifyMaxDepth + 1} {
		in := append(bytes.Repeat([]byte{0x30, 0x80}, k), 0x04, 0x00)
		in = append(in, make([]byte, 2*k)...)
		n, err := berLen(in, 0)
		if k <= classifyMaxDepth && (n != len(in) || err != nil) {
			t.Errorf("%d levels: %d, %v; want %d", k, n, err, len(in))
		}
		if k > classifyMaxDepth && !errors.Is(err, errShape) {
			t.Errorf("%d levels: %v, want errShape", k, err)
		}
	}
}

// TestClassifyDepthInSignature: the nesting bound also counts the levels of a signature part
// and of the content a SignedData there encapsulates.
func TestClassifyDepthInSignature(t *testing.T) {
	oidData := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	oidSigned := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	// The top multipart/signed is depth 0, its signature part 1, the encapsulated entity 2.
	for _, n := range []int{classifyMaxDepth - 2, classifyMaxDepth - 1} {
		inner := "Content-Type: text/plain\r\n\r\nhello\r\n"
		for range n {
			inner = "Content-Type: message/rfc822\r\n\r\n" + inner
		}
		eci := append(append([]byte{}, oidData...), m2TLV(0xa0, m2TLV(0x04, []byte(inner)))...)
		body := append([]byte{0x02, 0x01, 0x01, 0x31, 0x00}, m2TLV(0x30, eci)...)
		body = append(body, 0x31, 0x00)
		sd := m2TLV(0x30, append(append([]byte{}, oidSigned...), m2TLV(0xa0, m2TLV(0x30, body))...))
		msg := "From: a@example.test\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n" +
			"--s\r\nContent-Type: text/plain\r\n\r\nsigned\r\n--s\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString(sd) + "\r\n--s--\r\n"
		c := Classify([]byte(msg))
		if n <= classifyMaxDepth-2 && c.Class != Plain {
			t.Fatalf("%d levels: %v (%s), want plain", n, c.Class, c.Reason)
		}
		if n > classifyMaxDepth-2 && (c.Class != Refused || !strings.Contains(c.Reason, "nested deeper")) {
			t.Fatalf("%d levels: %v (%s), want refused as nested too deep", n, c.Class, c.Reason)
		}
	}
}

// TestSignaturePartLayer: a signature part without a Content-Type is read as
// application/pkcs7-signature, and one longer than the header reader's buffer is read from
// its body's start: the SignedData in it is a layer of the classification.
func TestSignaturePartLayer(t *testing.T) {
	oidData := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	oidSigned := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	for _, size := range []int{16, 6000} {
		// Encapsulated content that is no MIME entity and no CMS.
		eci := append(append([]byte{}, oidData...), m2TLV(0xa0, m2TLV(0x04, bytes.Repeat([]byte{0xff}, size)))...)
		body := append([]byte{0x02, 0x01, 0x01, 0x31, 0x00}, m2TLV(0x30, eci)...)
		body = append(body, 0x31, 0x00)
		sd := m2TLV(0x30, append(append([]byte{}, oidSigned...), m2TLV(0xa0, m2TLV(0x30, body))...))
		msg := "From: a@example.test\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n" +
			"--s\r\nContent-Type: text/plain\r\n\r\nsigned\r\n--s\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64.StdEncoding.EncodeToString(sd) + "\r\n--s--\r\n"
		c := Classify([]byte(msg))
		if c.Class != Plain {
			t.Fatalf("%d octets: %v (%s), want plain", size, c.Class, c.Reason)
		}
		if len(c.Layers) != 1 || c.Layers[0].Path != "2" || c.Layers[0].MediaType != "application/pkcs7-signature" ||
			c.Layers[0].Type != TypeSignedData || !bytes.Equal(c.Layers[0].DER, sd) {
			t.Fatalf("%d octets: layers %+v, want the SignedData of part 2", size, c.Layers)
		}
	}
}

// TestUUBlocksExact: uuBlocks gives back exactly the bytes a uuencoder wrote, for every length
// of a last line (45 octets a full line) and with or without the "end" line.
func TestUUBlocksExact(t *testing.T) {
	enc := func(data []byte, end bool) []byte {
		var b bytes.Buffer
		b.WriteString("text before\r\nbegin 644 x.p7m\r\n")
		for len(data) > 0 {
			n := min(len(data), 45)
			line := data[:n]
			data = data[n:]
			b.WriteByte(byte(32 + n))
			for i := 0; i < n; i += 3 {
				var g [3]byte
				copy(g[:], line[i:min(i+3, n)])
				for _, c := range []byte{g[0] >> 2, (g[0]<<4 | g[1]>>4) & 63, (g[1]<<2 | g[2]>>6) & 63, g[2] & 63} {
					if c == 0 {
						c = 64 // '`' for zero, as uuencode writes
					}
					b.WriteByte(32 + c)
				}
			}
			b.WriteString("\r\n")
		}
		b.WriteString("`\r\n")
		if end {
			b.WriteString("end\r\nafter\r\n")
		}
		return b.Bytes()
	}
	for n := 0; n <= 95; n++ {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(i*37 + n)
		}
		for _, end := range []bool{true, false} {
			got := uuBlocks(enc(data, end))
			if len(got) != 1 || !bytes.Equal(got[0], data) {
				t.Fatalf("%d octets (end line %v): got %d blocks, %x", n, end, len(got), got)
			}
		}
	}
}
