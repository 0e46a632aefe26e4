package directory

import (
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fixture is a certificates folder and roots file with one certificate per
// case, each for its own address.
type fixture struct {
	dir, certs, roots string
	certsFor          map[string]*x509.Certificate
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	p := testPKI(t)
	f := &fixture{dir: t.TempDir(), certsFor: map[string]*x509.Certificate{}}
	f.certs = filepath.Join(f.dir, "certs")
	f.roots = filepath.Join(f.dir, "roots.pem")
	// Roots file: a root and an intermediate; the intermediate must be
	// recognised as such, not trusted as an anchor.
	writeFile(t, f.roots, pemOf(p.rootA, p.interA))
	if err := os.MkdirAll(f.certs, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) add(t *testing.T, name string, certs ...*x509.Certificate) {
	t.Helper()
	writeFile(t, filepath.Join(f.certs, name), pemOf(certs...))
}

func (f *fixture) open(t *testing.T, now time.Time) *Directory {
	t.Helper()
	d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return d
}

func TestLookup(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)

	noKE := leafTemplate("nokE", "noke@example.test")
	noKE.KeyUsage = x509.KeyUsageDigitalSignature
	noEKU := leafTemplate("noeku", "noeku@example.test")
	noEKU.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	noKUAtAll := leafTemplate("noku", "noku@example.test")
	noKUAtAll.KeyUsage = 0
	noKUAtAll.ExtKeyUsage = nil
	expired := leafTemplate("expired", "expired@example.test")
	expired.NotBefore, expired.NotAfter = t0.AddDate(-2, 0, 0), t0.AddDate(-1, 0, 0)
	future := leafTemplate("future", "future@example.test")
	future.NotBefore = t0.AddDate(0, 0, 1)
	older := leafTemplate("two old", "two@example.test")
	older.NotBefore = t0.AddDate(0, -6, 0)
	newer := leafTemplate("two new", "two@example.test")
	newer.NotBefore = t0.AddDate(0, 0, -1)

	f.add(t, "alice.pem", p.leaf(leafTemplate("alice", "Alice@Example.TEST")))
	f.add(t, "noke.crt", p.leaf(noKE))
	f.add(t, "noeku", p.leaf(noEKU))
	f.add(t, "noku.pem", p.leaf(noKUAtAll))
	f.add(t, "expired.pem", p.leaf(expired))
	f.add(t, "future.pem", p.leaf(future))
	f.add(t, "ec.pem", mustCert(ecTemplate("ec", "ec@example.test"), p.interA, p.ecKey, p.interAKey))
	f.add(t, "ec384.pem", mustCert(ecTemplate("ec384", "ec384@example.test"), p.interA, p.ec384Key, p.interAKey))
	f.add(t, "ec521.pem", mustCert(ecTemplate("ec521", "ec521@example.test"), p.interA, p.ec521Key, p.interAKey))
	f.add(t, "ecnoka.pem", mustCert(leafTemplate("ecnoka", "ecnoka@example.test"), p.interA, p.ecKey, p.interAKey))
	f.add(t, "weak.pem", mustCert(leafTemplate("weak", "weak@example.test"), p.interA, p.weakKey, p.interAKey))
	f.add(t, "stranger.pem", mustCert(leafTemplate("stranger", "stranger@example.test"), p.rootB, p.leafKey, p.rootBKey))
	f.add(t, "subject-email.pem", p.leaf(emailOnlyInSubject("erin", "erin@example.test")))
	f.add(t, "two-old.pem", p.leaf(older))
	f.add(t, "sub/two-new.pem", p.leaf(newer))
	f.add(t, "multi.pem", p.leaf(leafTemplate("multi", "m1@example.test", "m2@example.test")))
	writeFile(t, filepath.Join(f.certs, "der.cer"), p.leaf(leafTemplate("dave", "dave@example.test")).Raw)

	d := f.open(t, t0)
	if probs := d.Problems(); len(probs) != 0 {
		t.Fatalf("unexpected problems: %v", probs)
	}
	tests := []struct {
		name      string
		addr      string
		valid     int
		rejected  error // reason of the single rejection
		wantCNs   []string
		wantInMsg string
	}{
		{name: "ok valid", addr: "alice@example.test", valid: 1},
		{name: "ok case-folded lookup", addr: "ALICE@example.Test", valid: 1},
		{name: "ok angle brackets", addr: "<alice@example.test>", valid: 1},
		{name: "ok no keyUsage and no EKU means any use", addr: "noku@example.test", valid: 1},
		{name: "ok address only in subject emailAddress", addr: "erin@example.test", valid: 1},
		{name: "ok DER file", addr: "dave@example.test", valid: 1},
		{name: "ok second SAN address", addr: "m2@example.test", valid: 1},
		{name: "ok two certificates newest first", addr: "two@example.test", valid: 2, wantCNs: []string{"two new", "two old"}},
		{name: "ok unknown address", addr: "nobody@example.test", valid: 0},
		{name: "fail expired", addr: "expired@example.test", rejected: ErrExpired},
		{name: "fail not yet valid", addr: "future@example.test", rejected: ErrNotYetValid},
		{name: "fail no keyEncipherment", addr: "noke@example.test", rejected: ErrKeyUsage, wantInMsg: "keyUsage lacks keyEncipherment"},
		{name: "fail no emailProtection", addr: "noeku@example.test", rejected: ErrExtKeyUsage},
		{name: "ok EC P-256 key with keyAgreement", addr: "ec@example.test", valid: 1},
		{name: "ok EC P-384 key with keyAgreement", addr: "ec384@example.test", valid: 1},
		{name: "fail EC P-521 key", addr: "ec521@example.test", rejected: ErrECKey, wantInMsg: "P-521"},
		{name: "fail EC key without keyAgreement", addr: "ecnoka@example.test", rejected: ErrKeyAgreeUsage, wantInMsg: "keyUsage lacks keyAgreement"},
		{name: "fail weak RSA key", addr: "weak@example.test", rejected: ErrWeakKey},
		{name: "fail wrong root", addr: "stranger@example.test", rejected: ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			valid, rejected := d.Lookup(tt.addr)
			if len(valid) != tt.valid {
				t.Fatalf("valid = %d, want %d (rejected %v)", len(valid), tt.valid, rejected)
			}
			for i, cn := range tt.wantCNs {
				if valid[i].Cert.Subject.CommonName != cn {
					t.Errorf("valid[%d] = %q, want %q", i, valid[i].Cert.Subject.CommonName, cn)
				}
			}
			for _, e := range valid {
				if e.ID != CertID(e.Cert) || len(e.ID) != 64 {
					t.Errorf("bad ID %q", e.ID)
				}
			}
			if tt.rejected == nil {
				if len(rejected) != 0 {
					t.Fatalf("rejected: %v", rejected)
				}
				return
			}
			if len(rejected) != 1 {
				t.Fatalf("rejected = %v, want one", rejected)
			}
			err := rejected[0].Err
			if !errors.Is(err, tt.rejected) {
				t.Fatalf("err = %v, want %v", err, tt.rejected)
			}
			var ce *CertError
			if !errors.As(err, &ce) {
				t.Fatalf("err %T is not a *CertError", err)
			}
			c := rejected[0].Cert
			want := fmt.Sprintf("certificate %q serial %#x: ", c.Subject.String(), c.SerialNumber)
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err, want)
			}
			if tt.wantInMsg != "" && !strings.Contains(err.Error(), tt.wantInMsg) {
				t.Errorf("message %q lacks %q", err, tt.wantInMsg)
			}
		})
	}

	t.Run("ok EC refusals are key algorithm and key usage refusals", func(t *testing.T) {
		_, rej := d.Lookup("ec521@example.test")
		if len(rej) != 1 || !errors.Is(rej[0].Err, ErrKeyAlgorithm) {
			t.Fatalf("rejected = %v", rej)
		}
		_, rej = d.Lookup("ecnoka@example.test")
		if len(rej) != 1 || !errors.Is(rej[0].Err, ErrKeyUsage) {
			t.Fatalf("rejected = %v", rej)
		}
	})
}

func TestLookupClock(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	f.add(t, "a.pem", p.leaf(leafTemplate("a", "a@example.test")))
	var mu sync.Mutex
	now := t0
	d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Lookup("a@example.test"); len(v) != 1 {
		t.Fatal("ok now: not valid")
	}
	mu.Lock()
	now = t0.AddDate(2, 0, 0)
	mu.Unlock()
	if v, r := d.Lookup("a@example.test"); len(v) != 0 || len(r) != 1 || !errors.Is(r[0].Err, ErrExpired) {
		t.Fatalf("fail later: still valid without reload (%d valid, %v)", len(v), r)
	}
}

func TestCaseSensitiveLocalPart(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	f.add(t, "a.pem", p.leaf(leafTemplate("a", "Anna@example.test")))
	for _, tt := range []struct {
		name      string
		sensitive bool
		addr      string
		want      int
	}{
		{"ok folded by default", false, "anna@EXAMPLE.test", 1},
		{"ok exact with sensitive local part", true, "Anna@EXAMPLE.test", 1},
		{"fail other case with sensitive local part", true, "anna@example.test", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, Now: func() time.Time { return t0 }, CaseSensitiveLocalPart: tt.sensitive})
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := d.Lookup(tt.addr); len(v) != tt.want {
				t.Fatalf("valid = %d, want %d", len(v), tt.want)
			}
		})
	}
}

func TestBundleWithIntermediate(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	// Roots file with only the root: the intermediate has to come from
	// the bundle in the folder.
	writeFile(t, f.roots, pemOf(p.rootA))
	f.add(t, "bundle.pem", p.leaf(leafTemplate("b1", "b1@example.test")), p.interA, p.leaf(leafTemplate("b2", "b2@example.test")))
	d := f.open(t, t0)
	for _, addr := range []string{"b1@example.test", "b2@example.test"} {
		if v, r := d.Lookup(addr); len(v) != 1 {
			t.Errorf("%s: valid = %d, rejected %v", addr, len(v), r)
		}
	}
	if v, r := d.Lookup("test intermediate a"); len(v)+len(r) != 0 {
		t.Error("CA certificate indexed as a recipient")
	}

	t.Run("fail without the intermediate", func(t *testing.T) {
		g := newFixture(t)
		writeFile(t, g.roots, pemOf(p.rootA))
		g.add(t, "leaf.pem", p.leaf(leafTemplate("b1", "b1@example.test")))
		_, r := g.open(t, t0).Lookup("b1@example.test")
		if len(r) != 1 || !errors.Is(r[0].Err, ErrUntrusted) {
			t.Fatalf("rejected = %v", r)
		}
	})
}

func TestProblems(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	f.add(t, "good.pem", p.leaf(leafTemplate("good", "good@example.test")))
	writeFile(t, filepath.Join(f.certs, "garbage.pem"), []byte("this is not a certificate\n"))
	writeFile(t, filepath.Join(f.certs, "bad-block.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	writeFile(t, filepath.Join(f.certs, "key-only.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	writeFile(t, filepath.Join(f.certs, "empty.pem"), nil)
	f.add(t, "noaddr.pem", p.leaf(leafTemplate("noaddr")))
	writeFile(t, filepath.Join(f.certs, ".hidden.pem"), []byte("junk"))
	d := f.open(t, t0)

	got := map[string]error{}
	for _, e := range d.Problems() {
		var fe *FileError
		if !errors.As(e, &fe) {
			t.Fatalf("problem %T is not a *FileError", e)
		}
		got[filepath.Base(fe.Path)] = fe
	}
	for _, tt := range []struct {
		name string
		file string
		want error
	}{
		{"fail garbage", "garbage.pem", nil},
		{"fail bad PEM block", "bad-block.pem", nil},
		{"fail PEM without certificate", "key-only.pem", ErrNoCertificates},
		{"fail empty file", "empty.pem", ErrNoCertificates},
		{"fail certificate without address", "noaddr.pem", ErrNoAddress},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err, ok := got[tt.file]
			if !ok {
				t.Fatalf("no problem reported for %s; got %v", tt.file, got)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.file) {
				t.Errorf("message %q does not name the file", err)
			}
		})
	}
	if len(got) != 5 {
		t.Errorf("problems = %v, want 5 (hidden files skipped)", got)
	}
	if v, _ := d.Lookup("good@example.test"); len(v) != 1 {
		t.Error("a bad file stopped a good one from loading")
	}
}

func TestOpenFails(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	onlyInter := filepath.Join(f.dir, "inter.pem")
	writeFile(t, onlyInter, pemOf(p.interA))
	garbage := filepath.Join(f.dir, "garbage.pem")
	writeFile(t, garbage, []byte("nope"))
	for _, tt := range []struct {
		name  string
		o     Options
		want  error
		check func(error) bool
	}{
		{name: "fail certs folder missing", o: Options{CertsDir: filepath.Join(f.dir, "nope"), RootsFile: f.roots}, want: os.ErrNotExist},
		{name: "fail certs folder is a file", o: Options{CertsDir: f.roots, RootsFile: f.roots}},
		{name: "fail roots missing", o: Options{CertsDir: f.certs, RootsFile: filepath.Join(f.dir, "nope.pem")}, want: os.ErrNotExist},
		{name: "fail roots garbage", o: Options{CertsDir: f.certs, RootsFile: garbage}},
		{name: "fail roots without self-signed", o: Options{CertsDir: f.certs, RootsFile: onlyInter}, want: ErrNoRoots},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Open(tt.o)
			if err == nil || d != nil {
				t.Fatalf("Open = %v, %v; want failure", d, err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestOwners(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	alice := p.leaf(leafTemplate("alice", "alice@example.test"))
	expiredT := leafTemplate("old", "old@example.test")
	expiredT.NotAfter = t0.AddDate(0, 0, -1)
	expired := p.leaf(expiredT)
	noSKIT := leafTemplate("noski", "noski@example.test")
	// CreateCertificate adds an SKI only to CA certificates; leaves get
	// one when asked.
	alice2 := leafTemplate("alice2", "alice2@Example.test")
	alice2.SubjectKeyId = []byte{1, 2, 3, 4}
	f.add(t, "a.pem", alice, expired, p.leaf(noSKIT), p.leaf(alice2))
	d := f.open(t, t0)
	a2 := mustFind(t, d, "alice2@example.test")

	for _, tt := range []struct {
		name   string
		issuer []byte
		serial *big.Int
		want   string
	}{
		{"ok alice", alice.RawIssuer, alice.SerialNumber, "alice@example.test"},
		{"ok expired still maps to its owner", expired.RawIssuer, expired.SerialNumber, "old@example.test"},
		{"ok domain lower-cased", a2.RawIssuer, a2.SerialNumber, "alice2@example.test"},
		{"fail wrong serial", alice.RawIssuer, big.NewInt(999999), ""},
		{"fail wrong issuer", p.rootB.RawSubject, alice.SerialNumber, ""},
		{"fail nil serial", alice.RawIssuer, nil, ""},
	} {
		t.Run("issuer serial "+tt.name, func(t *testing.T) {
			got, err := d.OwnerByIssuerSerial(tt.issuer, tt.serial)
			if got != tt.want || (err == nil) != (tt.want != "") || (err != nil && !errors.Is(err, ErrUnknownIdentifier)) {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		name string
		ski  []byte
		want string
	}{
		{"ok ski", []byte{1, 2, 3, 4}, "alice2@example.test"},
		{"fail unknown ski", []byte{9, 9}, ""},
		{"fail empty ski", nil, ""},
	} {
		t.Run("ski "+tt.name, func(t *testing.T) {
			got, err := d.OwnerBySKI(tt.ski)
			if got != tt.want || (err == nil) != (tt.want != "") || (err != nil && !errors.Is(err, ErrUnknownIdentifier)) {
				t.Fatalf("= %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("ok ByID", func(t *testing.T) {
		e, ok := d.ByID(strings.ToUpper(CertID(expired)))
		if !ok || e.Cert.SerialNumber.Cmp(expired.SerialNumber) != 0 || e.Address != "old@example.test" {
			t.Fatalf("ByID = %+v, %v", e, ok)
		}
	})
	t.Run("fail ByID unknown", func(t *testing.T) {
		if _, ok := d.ByID(CertID(p.rootA)); ok {
			t.Fatal("root found as a recipient")
		}
	})
}

func mustFind(t *testing.T, d *Directory, addr string) *x509.Certificate {
	t.Helper()
	v, r := d.Lookup(addr)
	if len(v) != 1 {
		t.Fatalf("%s: valid %d, rejected %v", addr, len(v), r)
	}
	return v[0].Cert
}

func TestValidateFor(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	d := f.open(t, t0)
	bob := p.leaf(leafTemplate("bob", "bob@example.test"))
	erin := p.leaf(emailOnlyInSubject("erin", "erin@example.test"))
	for _, tt := range []struct {
		name string
		c    *x509.Certificate
		addr string
		now  time.Time
		want error
	}{
		{"ok san", bob, "Bob@Example.test", t0, nil},
		{"ok subject emailAddress", erin, "erin@example.test", t0, nil},
		{"fail other address", bob, "eve@example.test", t0, ErrAddressMismatch},
		{"fail expired at given time", bob, "bob@example.test", t0.AddDate(3, 0, 0), ErrExpired},
		{"fail root is no recipient", p.rootA, "x@example.test", t0, ErrKeyUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := d.ValidateFor(tt.c, tt.addr, tt.now)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReload(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	f.add(t, "a.pem", p.leaf(leafTemplate("a", "a@example.test")))
	d := f.open(t, t0)
	if v, _ := d.Lookup("new@example.test"); len(v) != 0 {
		t.Fatal("new@ known before it exists")
	}

	// Readers run throughout; -race checks the swap.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if v, _ := d.Lookup("a@example.test"); len(v) != 1 {
					t.Error("a@ lost during reload")
					return
				}
				d.OwnerBySKI([]byte{1})
				_ = d.Problems()
			}
		}()
	}

	f.add(t, "new.pem", p.leaf(leafTemplate("new", "new@example.test")))
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if v, _ := d.Lookup("new@example.test"); len(v) != 1 {
		t.Error("ok reload picks up a new file: not found")
	}

	// A failed reload keeps the last good state.
	if err := os.Remove(f.roots); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err == nil {
		t.Error("fail reload without roots: no error")
	}
	if v, _ := d.Lookup("new@example.test"); len(v) != 1 {
		t.Error("failed reload dropped the previous state")
	}
	close(stop)
	wg.Wait()
}

func TestLoadCertificates(t *testing.T) {
	p := testPKI(t)
	dir := t.TempDir()
	two := append(append([]byte{}, p.rootA.Raw...), p.interA.Raw...)
	for _, tt := range []struct {
		name string
		data []byte
		want int
		err  bool
	}{
		{name: "ok single PEM", data: pemOf(p.rootA), want: 1},
		{name: "ok PEM bundle with text and other blocks", data: append(append([]byte("subject=...\n"), pemOf(p.rootA, p.interA)...), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")...), want: 2},
		{name: "ok DER", data: p.rootA.Raw, want: 1},
		{name: "ok concatenated DER", data: two, want: 2},
		{name: "fail empty", data: nil, err: true},
		{name: "fail text", data: []byte("hello"), err: true},
		{name: "fail truncated DER", data: p.rootA.Raw[:100], err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			writeFile(t, path, tt.data)
			certs, err := LoadCertificates(path)
			if tt.err {
				if err == nil {
					t.Fatal("no error")
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil || len(certs) != tt.want {
				t.Fatalf("= %d certs, %v; want %d", len(certs), err, tt.want)
			}
		})
	}
	if _, err := LoadCertificates(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fail missing file: %v", err)
	}
}

func FuzzParseCertificates(f *testing.F) {
	p := testPKI(f)
	f.Add(pemOf(p.rootA, p.interA))
	f.Add(p.interA.Raw)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCertificates(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		for _, c := range certs {
			_ = Addresses(c)
		}
	})
}

func BenchmarkLookup(b *testing.B) {
	p := testPKI(b)
	dir := b.TempDir()
	writeFile(b, filepath.Join(dir, "roots.pem"), pemOf(p.rootA, p.interA))
	writeFile(b, filepath.Join(dir, "certs", "a.pem"), pemOf(p.leaf(leafTemplate("a", "a@example.test"))))
	d, err := Open(Options{CertsDir: filepath.Join(dir, "certs"), RootsFile: filepath.Join(dir, "roots.pem"), Now: func() time.Time { return t0 }})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if v, _ := d.Lookup("a@example.test"); len(v) != 1 {
			b.Fatal("not found")
		}
	}
}

// The verified-chain cache must not outlive an intermediate's validity.
func TestChainCacheHonoursIntermediateExpiry(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	shortT := caTemplate("Short Intermediate")
	shortT.NotAfter = t0.AddDate(0, 1, 0)
	short := mustCert(shortT, p.rootA, p.interAKey, p.rootAKey)
	writeFile(t, f.roots, pemOf(p.rootA, short))
	leaf := mustCert(leafTemplate("s", "s@example.test"), short, p.leafKey, p.interAKey)
	f.add(t, "s.pem", leaf)
	d := f.open(t, t0)
	for _, tt := range []struct {
		name string
		now  time.Time
		want error
	}{
		{"ok while the intermediate is valid", t0, nil},
		{"ok again from the cache", t0.Add(time.Hour), nil},
		{"fail after the intermediate expired", t0.AddDate(0, 2, 0), ErrUntrusted},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := d.Validate(leaf, tt.now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSymlinks(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	// The Kubernetes volume layout: the real files in a hidden folder,
	// symlinks to them at the top, and the folder itself reached through
	// a symlink.
	writeFile(t, filepath.Join(f.certs, "..data", "a.pem"), pemOf(p.leaf(leafTemplate("a", "a@example.test"))))
	if err := os.Symlink(filepath.Join("..data", "a.pem"), filepath.Join(f.certs, "a.pem")); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(f.dir, "certs-link")
	if err := os.Symlink(f.certs, link); err != nil {
		t.Fatal(err)
	}
	d, err := Open(Options{CertsDir: link, RootsFile: f.roots, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	if v, r := d.Lookup("a@example.test"); len(v) != 1 {
		t.Fatalf("ok through symlinks: valid %d, rejected %v, problems %v", len(v), r, d.Problems())
	}
}
