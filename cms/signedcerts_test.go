package cms

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"appliance/internal/softhsmtest"
)

// TestKeepSignerCertificates: what OpenSSL signs (DER and -stream BER) with the signer's chain
// and a bystander's certificate keeps the chain, loses the bystander, and still verifies.
func TestKeepSignerCertificates(t *testing.T) {
	env := softhsmtest.Setup(t)
	content := []byte("Content-Type: text/plain\r\n\r\nsigned\r\n")
	in := writeFile(t, "content", content)
	var extra []byte
	for _, f := range []string{"inter.pem", "dave.pem"} {
		b, err := os.ReadFile(env.File(f))
		if err != nil {
			t.Fatal(err)
		}
		extra = append(extra, b...)
	}
	certfile := writeFile(t, "extra.pem", extra)
	root, _ := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	dave := env.Cert(t, "dave")
	for _, stream := range []bool{false, true} {
		out := filepath.Join(t.TempDir(), "s.der")
		args := []string{"cms", "-sign", "-binary", "-nodetach", "-outform", "DER", "-in", in, "-out", out,
			"-signer", env.File("alice.pem"), "-inkey", env.File("alice.key"), "-certfile", certfile}
		if stream {
			args = append(args, "-stream")
		}
		if _, err := openssl(t, args...); err != nil {
			t.Fatal(err)
		}
		der, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		got, dropped, err := KeepSignerCertificates(der)
		if err != nil || dropped != 1 {
			t.Fatalf("stream=%v: dropped %d, %v", stream, dropped, err)
		}
		s, err := ParseSigned(got)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Certificates) != 2 || bytes.Contains(got, dave.Raw) {
			t.Errorf("stream=%v: %d certificates kept, dave's among them: %v", stream, len(s.Certificates), bytes.Contains(got, dave.Raw))
		}
		if _, err := s.Verify(VerifyOptions{Roots: roots}); err != nil {
			t.Errorf("stream=%v: no longer verifies: %v", stream, err)
		}
		if _, err := openssl(t, "cms", "-verify", "-inform", "DER", "-in", writeFile(t, "k.der", got), "-CAfile", env.File("roots.pem")); err != nil {
			t.Errorf("stream=%v: openssl: %v", stream, err)
		}
		again, n, err := KeepSignerCertificates(got)
		if err != nil || n != 0 || !bytes.Equal(again, got) {
			t.Errorf("stream=%v: a second pass changed something (%d, %v)", stream, n, err)
		}
	}
}

// TestSniff: a ContentInfo is recognised in any length form BER allows, truncated, or with
// indefinite lengths; other DER is not.
func TestSniff(t *testing.T) {
	env := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"ok short", append([]byte{0x30, 0x0d}, append(env, 0xa0, 0x00)...), true},
		{"ok indefinite truncated", append([]byte{0x30, 0x80}, env...), true},
		{"ok long-form outer length", append([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff}, env...), true},
		{"ok long-form oid length", append([]byte{0x30, 0x80, 0x06, 0x81, 0x09}, env[2:]...), true},
		{"ok id-ct", []byte{0x30, 0x80, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17}, true},
		{"fail certificate", []byte{0x30, 0x82, 0x01, 0x00, 0x30, 0x82}, false},
		{"fail other oid", []byte{0x30, 0x05, 0x06, 0x03, 0x2a, 0x03, 0x04}, false},
		{"fail the arc itself", []byte{0x30, 0x80, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07}, false},
		{"fail truncated oid", []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86}, false},
		{"fail empty", nil, false},
	}
	for _, tt := range tests {
		if _, ok := Sniff(tt.in); ok != tt.ok {
			t.Errorf("%s: %v, want %v", tt.name, ok, tt.ok)
		}
	}
}
