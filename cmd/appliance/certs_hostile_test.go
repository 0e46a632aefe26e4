package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/internal/softhsmtest"
)

// TestCertsReportsAmbiguous: a certificate planted in the folder with Bob's subject key
// identifier is reported by `certs list`, both claimants are listed as refused, and `certs
// check` refuses Bob.
func TestCertsReportsAmbiguous(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfgPath, certs := certsConfig(t, env, "")
	bob := env.Cert(t, "bob")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "planted"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		EmailAddresses: []string{"mallory@example.test"}, SubjectKeyId: bob.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "planted.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := runCerts([]string{"list", "-config", cfgPath}, &out, &errOut); err != nil {
		t.Fatalf("certs list: %v\n%s", err, errOut.String())
	}
	got := out.String()
	if !strings.Contains(got, "ambiguous: ski=") || !strings.Contains(got, "bob@example.test; mallory@example.test") {
		t.Errorf("certs list does not report the planted identifier:\n%s", got)
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.HasPrefix(line, "bob@example.test\t") && !strings.Contains(line, "more than one owner") {
			t.Errorf("bob's certificate not refused: %q", line)
		}
	}
	out.Reset()
	if err := runCerts([]string{"check", "bob@example.test", "-config", cfgPath}, &out, &errOut); err == nil {
		t.Errorf("certs check bob succeeded with an ambiguous identifier:\n%s", out.String())
	}
}
