package main

// Copies of package daemon's test fixtures: its TLS pair (tlsreload_test.go there) for
// check-config's and check-connect's TLS cases, its sign-only card (token_test.go) for keys.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

// testPair is a self-signed server certificate for 127.0.0.1 with its key,
// PEM encoded as the files an operator installs.
type testPair struct {
	serial    int64
	cert, key []byte
	parsed    *x509.Certificate
}

func newTestPair(t *testing.T, serial int64) testPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "relay.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testPair{
		serial: serial,
		cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		parsed: parsed,
	}
}

func writeTestFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// cardMechanisms is a sign-only card: RSA PKCS#1 v1.5 signing and key generation, nothing else.
const cardMechanisms = "CKM_RSA_PKCS,CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS"

// startCard serves a sign-only SoftHSM2 token labelled "card", in its own process behind
// `p11-kit server`, with an RSA key "carol" on it, and points this process's p11-kit client at it.
func startCard(t *testing.T, env *softhsmtest.Env) *softhsmtest.Remote {
	t.Helper()
	r := env.Serve(t, env.Card(t, "card", cardMechanisms), "card")
	t.Setenv("P11_KIT_SERVER_ADDRESS", r.Address)
	tok, err := hsm.Open(hsm.Config{Module: r.Module, TokenLabel: "card", PIN: softhsmtest.PIN, Roles: hsm.RoleSign})
	if err != nil {
		t.Fatalf("open card: %v", err)
	}
	defer tok.Close()
	if _, err := tok.GenerateKeyPair(context.Background(), "carol", hsm.RSA2048); err != nil {
		t.Fatalf("generate carol's key on the card: %v", err)
	}
	return r
}
