package directory

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A test PKI: rootA -> interA -> leaves, and an unrelated rootB. RSA key
// generation dominates test time, so keys are made once per binary and
// shared by certificates.
type pki struct {
	rootA, interA, rootB *x509.Certificate
	rootAKey, interAKey  *rsa.PrivateKey
	rootBKey             *rsa.PrivateKey
	leafKey              *rsa.PrivateKey
	ecKey                *ecdsa.PrivateKey // P-256
	ec384Key, ec521Key   *ecdsa.PrivateKey
	weakKey              *rsa.PrivateKey
}

var (
	pkiOnce sync.Once
	thePKI  *pki
	serials atomic.Int64
)

// t0 is the fixed "now" of the tests.
var t0 = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() {
		p := &pki{}
		gen := func(bits int) *rsa.PrivateKey {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			return k
		}
		p.rootAKey, p.interAKey, p.rootBKey, p.leafKey = gen(2048), gen(2048), gen(2048), gen(2048)
		p.weakKey = gen(1024)
		var err error
		if p.ecKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			panic(err)
		}
		if p.ec384Key, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
			panic(err)
		}
		if p.ec521Key, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader); err != nil {
			panic(err)
		}
		p.rootA = mustCert(caTemplate("Test Root A"), nil, p.rootAKey, nil)
		p.interA = mustCert(caTemplate("Test Intermediate A"), p.rootA, p.interAKey, p.rootAKey)
		p.rootB = mustCert(caTemplate("Test Root B"), nil, p.rootBKey, nil)
		thePKI = p
	})
	if thePKI == nil {
		t.Fatal("test PKI setup failed")
	}
	return thePKI
}

func caTemplate(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          big.NewInt(serials.Add(1)),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Appliance Test"}},
		NotBefore:             t0.AddDate(-5, 0, 0),
		NotAfter:              t0.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
}

// leafTemplate is a valid S/MIME encryption certificate for addr; tests
// break one property at a time.
func leafTemplate(cn string, addrs ...string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:   big.NewInt(0x1000 + serials.Add(1)),
		Subject:        pkix.Name{CommonName: cn, Organization: []string{"Appliance Test"}},
		NotBefore:      t0.AddDate(0, -1, 0),
		NotAfter:       t0.AddDate(1, 0, 0),
		KeyUsage:       x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: addrs,
	}
}

// ecTemplate is leafTemplate for an EC key: keyAgreement instead of keyEncipherment.
func ecTemplate(cn string, addrs ...string) *x509.Certificate {
	t := leafTemplate(cn, addrs...)
	t.KeyUsage = x509.KeyUsageKeyAgreement | x509.KeyUsageDigitalSignature
	return t
}

// mustCert signs tmpl with signerKey as parent (self-signed when parent is
// nil); the subject key is key's public half.
func mustCert(tmpl, parent *x509.Certificate, key crypto.Signer, signerKey crypto.Signer) *x509.Certificate {
	if parent == nil {
		parent, signerKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signerKey)
	if err != nil {
		panic(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return c
}

// leaf issues tmpl from interA with the shared leaf key.
func (p *pki) leaf(tmpl *x509.Certificate) *x509.Certificate {
	return mustCert(tmpl, p.interA, p.leafKey, p.interAKey)
}

func pemOf(certs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// emailOnlyInSubject puts addr in the subject's emailAddress attribute and
// leaves subjectAltName out.
func emailOnlyInSubject(cn, addr string) *x509.Certificate {
	tmpl := leafTemplate(cn)
	tmpl.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{
		Type:  asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1},
		Value: addr,
	}}
	return tmpl
}
