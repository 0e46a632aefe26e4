package smime_test

import (
	"bytes"
	"crypto/rand"
	"encoding/asn1"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"appliance/cms"
	"appliance/smime"
)

// derElem is a definite-length DER element.
func derElem(tag byte, contents ...[]byte) []byte {
	body := bytes.Join(contents, nil)
	n := len(body)
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 1<<16:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}

// bigEnvelope is the client-encrypted seed with size bytes of ciphertext instead of its own: a
// large client-encrypted message as the check at end of DATA and the pipeline see it.
func bigEnvelope(tb testing.TB, size int) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzClassify", "client-encrypted-authenveloped"))
	if err != nil {
		tb.Fatal(err)
	}
	c := smime.Classify(corpusBytes(tb, b))
	env, err := cms.ParseEnveloped(c.Envelope)
	if err != nil {
		tb.Fatal(err)
	}
	ct := make([]byte, size)
	rand.Read(ct)
	var eciSeq asn1.RawValue
	if _, err := asn1.Unmarshal(env.EncryptedContentInfo, &eciSeq); err != nil {
		tb.Fatal(err)
	}
	var ctOID, alg asn1.RawValue
	rest, err := asn1.Unmarshal(eciSeq.Bytes, &ctOID)
	if err == nil {
		_, err = asn1.Unmarshal(rest, &alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	var ris [][]byte
	for _, ri := range env.RecipientInfos {
		ris = append(ris, ri.Raw)
	}
	eci := derElem(0x30, []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}, alg.FullBytes, derElem(0x80, ct))
	der := derElem(0x30, []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03},
		derElem(0xa0, derElem(0x30, []byte{0x02, 0x01, 0x00}, derElem(0x31, ris...), eci)))
	var out bytes.Buffer
	out.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 76 {
		out.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc + "\r\n")
	return out.Bytes()
}

// BenchmarkCheckEnvelope10MB: what the check at end of DATA costs for a 10 MB client-encrypted
// message: Classify decodes all of its base64 (what the check did before), ClassifyHead only
// the envelope's start; ClassifyAs is what the pipeline then does with the recorded class.
func BenchmarkCheckEnvelope10MB(b *testing.B) {
	msg := bigEnvelope(b, 10<<20)
	b.Run("Classify", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if c := smime.Classify(msg); c.Class != smime.ClientEncrypted {
				b.Fatal(c.Class, c.Reason)
			}
		}
	})
	b.Run("ClassifyHead", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		r := bytes.NewReader(msg)
		for b.Loop() {
			if _, _, ok := smime.ClassifyHead(r, int64(len(msg))); !ok {
				b.Fatal("not answered")
			}
		}
	})
	b.Run("ClassifyAs", func(b *testing.B) {
		b.SetBytes(int64(len(msg)))
		for b.Loop() {
			if c := smime.ClassifyAs(msg, "client-encrypted"); c.Class != smime.ClientEncrypted {
				b.Fatal(c.Class)
			}
		}
	})
}

// BenchmarkClassifyPlain10MB: a 10 MB plain message (76-column base64-looking lines declared
// 7bit, the bench's load), classified in full (the pipeline before) and with the class the
// check recorded.
func BenchmarkClassifyPlain10MB(b *testing.B) {
	raw := make([]byte, 7680<<10)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	var msg bytes.Buffer
	msg.WriteString("From: alice@example.test\r\nTo: bob@example.test\r\nSubject: big\r\n\r\n")
	for len(enc) > 76 {
		msg.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	m := msg.Bytes()
	for _, class := range []string{"", "plain"} {
		b.Run("recorded="+class, func(b *testing.B) {
			b.SetBytes(int64(len(m)))
			for b.Loop() {
				if c := smime.ClassifyAs(m, class); c.Class != smime.Plain {
					b.Fatal(c.Class, c.Reason)
				}
			}
		})
	}
}

// TestBigEnvelope: the benchmark's message is what it claims to be.
func TestBigEnvelope(t *testing.T) {
	msg := bigEnvelope(t, 1<<20)
	c, _, ok := smime.ClassifyHead(bytes.NewReader(msg), int64(len(msg)))
	if full := smime.Classify(msg); !ok || full.Class != smime.ClientEncrypted || c.EnvelopeType != full.EnvelopeType {
		t.Fatalf("head %v, full %v %s", ok, full.Class, full.Reason)
	}
}
