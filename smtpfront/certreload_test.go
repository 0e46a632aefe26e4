package smtpfront

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pemPair is a self-signed certificate with serial serial and its key, PEM encoded as the files
// an operator installs.
func pemPair(t *testing.T, serial int64) (cert, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "relay.example.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

func TestCertReloaderStart(t *testing.T) {
	t.Parallel()
	cert, key := pemPair(t, 1)
	_, otherKey := pemPair(t, 2)
	tests := []struct {
		name      string
		cert, key []byte
		wantErr   bool
	}{
		{"ok matching pair", cert, key, false},
		{"fail key of another certificate", cert, otherKey, true},
		{"fail empty certificate", nil, key, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c, k := filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
			for path, b := range map[string][]byte{c: tt.cert, k: tt.key} {
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, err := NewCertReloader(c, k)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil {
				got, _ := r.Config().GetCertificate(nil)
				if got == nil || got.Leaf.SerialNumber.Int64() != 1 {
					t.Errorf("GetCertificate = %v, want the pair with serial 1", got)
				}
			}
		})
	}
}
