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
