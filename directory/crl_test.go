package directory

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"path/filepath"
	"testing"
	"time"
)

func makeCRL(t *testing.T, issuer *x509.Certificate, key *rsa.PrivateKey, next time.Time, revoked ...*x509.Certificate) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{
		Number:     big.NewInt(serials.Add(1)),
		ThisUpdate: t0.AddDate(0, 0, -1),
		NextUpdate: next,
	}
	for _, c := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: t0.AddDate(0, 0, -1)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCRL(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	good := p.leaf(leafTemplate("good", "good@example.test"))
	bad := p.leaf(leafTemplate("bad", "bad@example.test"))
	forged := p.leaf(leafTemplate("forged", "forged@example.test"))
	f.add(t, "certs.pem", good, bad, forged)
	crls := filepath.Join(f.dir, "crls")
	next := t0.AddDate(0, 0, 7)
	writeFile(t, filepath.Join(crls, "inter.crl"), makeCRL(t, p.interA, p.interAKey, next, bad))
	// Signed by a CA nobody configured: must be ignored, or anyone could
	// revoke anyone.
	fakeIssuer := mustCert(caTemplate("Test Intermediate A"), p.rootB, p.rootBKey, p.rootBKey)
	fake := makeCRL(t, fakeIssuer, p.rootBKey, next, forged)
	writeFile(t, filepath.Join(crls, "fake.pem"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: fake}))
	writeFile(t, filepath.Join(crls, "garbage.crl"), []byte("junk"))

	d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, CRLDir: crls, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		addr string
		want error
	}{
		{"ok not listed", "good@example.test", nil},
		{"ok listed only by an untrusted CRL", "forged@example.test", nil},
		{"fail revoked", "bad@example.test", ErrRevoked},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v, r := d.Lookup(tt.addr)
			if tt.want == nil {
				if len(v) != 1 {
					t.Fatalf("rejected %v", r)
				}
				return
			}
			if len(r) != 1 || !errors.Is(r[0].Err, tt.want) {
				t.Fatalf("valid %d, rejected %v", len(v), r)
			}
		})
	}
	probs := map[string]error{}
	for _, e := range d.Problems() {
		var fe *FileError
		if errors.As(e, &fe) {
			probs[filepath.Base(fe.Path)] = e
		}
	}
	if !errors.Is(probs["fake.pem"], ErrCRLIssuer) {
		t.Errorf("fail untrusted CRL: problem = %v", probs["fake.pem"])
	}
	if probs["garbage.crl"] == nil || probs["inter.crl"] != nil || len(probs) != 2 {
		t.Errorf("problems = %v", probs)
	}
}

func TestCRLRevokedIntermediateAndStale(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	leaf := p.leaf(leafTemplate("a", "a@example.test"))
	f.add(t, "a.pem", leaf)
	crls := filepath.Join(f.dir, "crls")
	// The root revokes the intermediate, and its CRL is overdue.
	writeFile(t, filepath.Join(crls, "root.crl"), makeCRL(t, p.rootA, p.rootAKey, t0.AddDate(0, 0, -1), p.interA))
	d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, CRLDir: crls, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	err = d.Validate(leaf, t0)
	if !errors.Is(err, ErrRevoked) {
		t.Fatalf("fail revoked intermediate: err = %v", err)
	}
	probs := d.Problems()
	if len(probs) != 1 || !errors.Is(probs[0], ErrCRLStale) {
		t.Errorf("fail stale CRL reported but applied: problems = %v", probs)
	}

	t.Run("fail missing CRL folder", func(t *testing.T) {
		if _, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, CRLDir: filepath.Join(f.dir, "nope")}); err == nil {
			t.Fatal("no error")
		}
	})
}

func FuzzParseCRLs(f *testing.F) {
	p := testPKI(f)
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: t0, NextUpdate: t0.Add(time.Hour)}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.rootA, p.rootAKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	f.Add([]byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		crls, err := ParseCRLs(data)
		if err == nil && len(crls) == 0 {
			t.Fatal("no CRLs and no error")
		}
	})
}
