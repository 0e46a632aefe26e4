package cms

import (
	"crypto"
	"crypto/x509"
	"testing"

	"appliance/internal/softhsmtest"

	"github.com/digitorus/pkcs7"
)

// TestPKCS7VerifiesOurs has a second, independent Go implementation (digitorus/pkcs7) parse and
// verify what Sign makes, encapsulated and detached, RSA and ECDSA, and reject a changed body.
func TestPKCS7VerifiesOurs(t *testing.T) {
	env := softhsmtest.Setup(t)
	root, inter := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	content := []byte("Content-Type: text/plain\r\n\r\nsigned once\r\n")
	for _, tc := range []struct {
		name     string
		signer   string
		detached bool
	}{
		{"ok rsa encapsulated", "alice", false},
		{"ok rsa detached", "alice", true},
		{"ok ecdsa encapsulated", "frank", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain := []*x509.Certificate{env.Cert(t, tc.signer), inter}
			der, err := Sign(env.Key(t, tc.signer), chain, content, SignOptions{Hash: crypto.SHA256, Detached: tc.detached})
			if err != nil {
				t.Fatal(err)
			}
			p7, err := pkcs7.Parse(der)
			if err != nil {
				t.Fatalf("pkcs7 cannot parse our SignedData: %v", err)
			}
			if tc.detached {
				p7.Content = content
			}
			if err := p7.VerifyWithChain(roots); err != nil {
				t.Fatalf("pkcs7 does not verify our SignedData: %v", err)
			}
			if got := p7.GetOnlySigner(); got == nil || !got.Equal(chain[0]) {
				t.Fatal("pkcs7 names another signer")
			}
			p7.Content = append([]byte{}, content...)
			p7.Content[len(p7.Content)-3] ^= 1
			if err := p7.Verify(); err == nil {
				t.Fatal("pkcs7 verified a changed body")
			}
		})
	}
}
