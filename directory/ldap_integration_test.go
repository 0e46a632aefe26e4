package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ldapFixture is a slapd loaded with the test PKI's people.
type ldapFixture struct {
	*slapd
	f                              *fixture
	bob, carol, heidiOld, heidiNew *Entry
	tlsConfig                      *tls.Config
}

func newLDAPFixture(t testing.TB) *ldapFixture {
	p := testPKI(t)
	s := startSlapd(t)
	lf := &ldapFixture{slapd: s, f: newFixtureTB(t)}
	bob := p.leaf(leafTemplate("bob", "bob@example.test"))
	carol := p.leaf(leafTemplate("carol", "carol@example.test"))
	old := leafTemplate("heidi old", "heidi@example.test")
	old.NotBefore = t0.AddDate(0, -6, 0)
	heidiOld := p.leaf(old)
	heidiNew := p.leaf(leafTemplate("heidi new", "heidi@example.test"))
	expired := leafTemplate("old", "old@example.test")
	expired.NotBefore, expired.NotAfter = t0.AddDate(-2, 0, 0), t0.AddDate(-1, 0, 0)
	other := p.leaf(leafTemplate("someone else", "else@example.test"))

	s.addPerson("bob", "bob@example.test", []*x509.Certificate{bob}, nil)
	s.addPerson("carol", "carol@example.test", nil, pkcs7Bundle(t, carol, p.interA))
	s.addPerson("heidi", "heidi@example.test", []*x509.Certificate{heidiOld, heidiNew}, nil)
	s.addPerson("old", "old@example.test", []*x509.Certificate{p.leaf(expired)}, nil)
	s.addPerson("mallory", "mallory@example.test", []*x509.Certificate{other}, nil)
	s.addPerson("nocert", "nocert@example.test", nil, nil)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.caPEM)
	lf.tlsConfig = &tls.Config{RootCAs: pool}
	lf.bob = &Entry{Cert: bob, ID: CertID(bob)}
	lf.carol = &Entry{Cert: carol, ID: CertID(carol)}
	lf.heidiOld, lf.heidiNew = &Entry{Cert: heidiOld}, &Entry{Cert: heidiNew}
	return lf
}

func newFixtureTB(t testing.TB) *fixture {
	p := testPKI(t)
	dir, err := os.MkdirTemp("", "directory-bench-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fixture{dir: dir, certsFor: map[string]*x509.Certificate{}}
	f.certs = filepath.Join(dir, "certs")
	f.roots = filepath.Join(dir, "roots.pem")
	writeFile(t, f.roots, pemOf(p.rootA, p.interA))
	if err := os.MkdirAll(f.certs, 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// pkcs7Bundle is a certs-only SignedData as LDAP's userSMIMECertificate
// holds it, made by openssl so the parser is tested on foreign DER.
func pkcs7Bundle(t testing.TB, certs ...*x509.Certificate) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.pem"), filepath.Join(dir, "out.p7b")
	writeFile(t, in, pemOf(certs...))
	if b, err := exec.Command("openssl", "crl2pkcs7", "-nocrl", "-certfile", in, "-outform", "DER", "-out", out).CombinedOutput(); err != nil {
		t.Fatalf("openssl crl2pkcs7: %v: %s", err, b)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func (lf *ldapFixture) open(t testing.TB, edit func(*Options)) *Directory {
	t.Helper()
	o := Options{
		CertsDir: lf.f.certs, RootsFile: lf.f.roots, Now: func() time.Time { return t0 },
		Sources: []string{SourceLDAP},
		LDAP: &LDAPOptions{URL: lf.ldapURL, BaseDN: slapdPeople, BindDN: slapdAdmin, BindPassword: slapdPW,
			Timeout: 2 * time.Second, RetryAfter: 50 * time.Millisecond},
	}
	if edit != nil {
		edit(&o)
	}
	d, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestLDAP(t *testing.T) {
	lf := newLDAPFixture(t)
	ctx := context.Background()

	t.Run("lookups", func(t *testing.T) {
		for _, mode := range []struct {
			name string
			edit func(*Options)
		}{
			{"ok plain ldap", nil},
			{"ok ldap with StartTLS", func(o *Options) { o.LDAP.StartTLS, o.LDAP.TLSConfig = true, lf.tlsConfig }},
			{"ok ldaps", func(o *Options) { o.LDAP.URL, o.LDAP.TLSConfig = lf.ldapsURL, lf.tlsConfig }},
			{"ok anonymous bind", func(o *Options) { o.LDAP.BindDN, o.LDAP.BindPassword = "", "" }},
		} {
			d := lf.open(t, mode.edit)
			for _, tt := range []struct {
				name     string
				addr     string
				want     []*x509.Certificate
				rejected error
			}{
				{"ok userCertificate;binary", "bob@example.test", []*x509.Certificate{lf.bob.Cert}, nil},
				{"ok case-folded", "BOB@Example.Test", []*x509.Certificate{lf.bob.Cert}, nil},
				{"ok userSMIMECertificate bundle", "carol@example.test", []*x509.Certificate{lf.carol.Cert}, nil},
				{"ok two certificates newest first", "heidi@example.test", []*x509.Certificate{lf.heidiNew.Cert, lf.heidiOld.Cert}, nil},
				{"ok entry without certificate", "nocert@example.test", nil, nil},
				{"ok no entry", "nobody@example.test", nil, nil},
				{"ok filter injection is escaped", "*)(mail=*", nil, nil},
				{"fail expired", "old@example.test", nil, ErrExpired},
				{"fail certificate of someone else", "mallory@example.test", nil, ErrAddressMismatch},
			} {
				t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
					valid, rejected, err := d.LookupContext(ctx, tt.addr)
					if err != nil {
						t.Fatalf("LookupContext: %v", err)
					}
					if len(valid) != len(tt.want) {
						t.Fatalf("valid = %d, want %d (rejected %v)", len(valid), len(tt.want), rejected)
					}
					for i, c := range tt.want {
						if !valid[i].Cert.Equal(c) || valid[i].Source != SourceLDAP {
							t.Errorf("valid[%d] = %s from %q", i, valid[i].Cert.Subject, valid[i].Source)
						}
					}
					if tt.rejected == nil {
						if len(rejected) != 0 {
							t.Errorf("rejected %v", rejected)
						}
						return
					}
					if len(rejected) != 1 || !errors.Is(rejected[0].Err, tt.rejected) {
						t.Fatalf("rejected = %v, want %v", rejected, tt.rejected)
					}
				})
			}
		}
	})

	t.Run("owners and IDs of certificates LDAP returned", func(t *testing.T) {
		d := lf.open(t, nil)
		if _, ok := d.ByID(lf.bob.ID); ok {
			t.Fatal("bob known before any lookup")
		}
		if _, _, err := d.LookupContext(ctx, "bob@example.test"); err != nil {
			t.Fatal(err)
		}
		if e, ok := d.ByID(lf.bob.ID); !ok || e.Address != "bob@example.test" {
			t.Errorf("ByID = %v, %v", e, ok)
		}
		if a, err := d.OwnerByIssuerSerial(lf.bob.Cert.RawIssuer, lf.bob.Cert.SerialNumber); err != nil || a != "bob@example.test" {
			t.Errorf("OwnerByIssuerSerial = %q, %v", a, err)
		}
	})

	t.Run("fail untrusted server certificate is unavailable", func(t *testing.T) {
		d := lf.open(t, func(o *Options) { o.LDAP.StartTLS = true }) // system roots do not know the test CA
		_, _, err := d.LookupContext(ctx, "bob@example.test")
		assertUnavailable(t, err)
	})

	t.Run("fail wrong password is unavailable, not certificate-less", func(t *testing.T) {
		d := lf.open(t, func(o *Options) { o.LDAP.BindPassword = "wrong" })
		_, _, err := d.LookupContext(ctx, "bob@example.test")
		assertUnavailable(t, err)
		if valid, _ := d.Lookup("bob@example.test"); len(valid) != 0 {
			t.Error("Lookup found certificates without LDAP")
		}
	})

	t.Run("ok sources in order", func(t *testing.T) {
		p := testPKI(t)
		f := newFixture(t)
		local := p.leaf(leafTemplate("bob local", "bob@example.test"))
		expiredTmpl := leafTemplate("carol expired local", "carol@example.test")
		expiredTmpl.NotAfter = t0.AddDate(0, 0, -1)
		f.add(t, "bob.pem", local)
		f.add(t, "carol.pem", p.leaf(expiredTmpl))
		for _, tt := range []struct {
			name    string
			sources []string
			addr    string
			want    *x509.Certificate
			nrej    int
		}{
			{"ok folder first wins", []string{SourceFolder, SourceLDAP}, "bob@example.test", local, 0},
			{"ok ldap first wins", []string{SourceLDAP, SourceFolder}, "bob@example.test", lf.bob.Cert, 0},
			{"ok expired in folder falls through to ldap", []string{SourceFolder, SourceLDAP}, "carol@example.test", lf.carol.Cert, 1},
		} {
			t.Run(tt.name, func(t *testing.T) {
				d := lf.open(t, func(o *Options) { o.CertsDir, o.RootsFile, o.Sources = f.certs, f.roots, tt.sources })
				valid, rejected, err := d.LookupContext(ctx, tt.addr)
				if err != nil || len(valid) != 1 || !valid[0].Cert.Equal(tt.want) || len(rejected) != tt.nrej {
					t.Fatalf("valid %v rejected %v err %v", valid, rejected, err)
				}
			})
		}
	})

	// These stop and restart slapd.
	t.Run("ok pooled connections cut by a server restart are replaced", func(t *testing.T) {
		d := lf.open(t, func(o *Options) { o.LDAP.CacheTTL, o.LDAP.NegativeTTL = -1, -1 })
		// Parallel lookups leave several connections idle in the pool.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if _, _, err := d.LookupContext(ctx, "bob@example.test"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if n := len(d.ldap.idle); n < 2 {
			t.Logf("only %d idle connections; the test is weaker", n)
		}
		lf.restart()
		if v, _, err := d.LookupContext(ctx, "carol@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("first lookup after restart: %v %v", v, err)
		}
	})

	t.Run("outage defers, cache answers, recovery after restart", func(t *testing.T) {
		var now atomic.Int64
		now.Store(t0.UnixNano())
		clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
		d := lf.open(t, func(o *Options) {
			o.Now = clock
			o.LDAP.CacheTTL, o.LDAP.NegativeTTL = time.Hour, time.Minute
		})
		if v, _, err := d.LookupContext(ctx, "bob@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("before outage: %v %v", v, err)
		}
		if v, _, err := d.LookupContext(ctx, "nobody@example.test"); err != nil || len(v) != 0 {
			t.Fatalf("before outage: %v %v", v, err)
		}
		lf.stop()
		if v, _, err := d.LookupContext(ctx, "bob@example.test"); err != nil || len(v) != 1 {
			t.Errorf("cached positive answer during outage: %v %v", v, err)
		}
		if _, _, err := d.LookupContext(ctx, "nobody@example.test"); err != nil {
			t.Errorf("cached negative answer during outage: %v", err)
		}
		_, _, err := d.LookupContext(ctx, "carol@example.test")
		assertUnavailable(t, err)
		now.Add(int64(2 * time.Minute)) // negative entry expired
		_, _, err = d.LookupContext(ctx, "nobody@example.test")
		assertUnavailable(t, err)

		lf.restart()
		now.Add(int64(time.Second)) // past RetryAfter
		valid, _, err := d.LookupContext(ctx, "carol@example.test")
		if err != nil || len(valid) != 1 {
			t.Fatalf("after restart: %v %v", valid, err)
		}
	})
}

func assertUnavailable(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	var tmp interface{ Temporary() bool }
	if !errors.As(err, &tmp) || !tmp.Temporary() {
		t.Fatalf("err %v is not Temporary", err)
	}
	var ue *UnavailableError
	if !errors.As(err, &ue) || ue.Source == "" {
		t.Fatalf("err %v is not an *UnavailableError naming its source", err)
	}
}

// BenchmarkLDAPLookup measures lookups per second answered by the cache and
// by slapd (cache off, one search per lookup over pooled connections).
func BenchmarkLDAPLookup(b *testing.B) {
	lf := newLDAPFixture(b)
	for _, bc := range []struct {
		name string
		ttl  time.Duration
	}{{"cache", time.Hour}, {"ldap", -1}} {
		b.Run(bc.name, func(b *testing.B) {
			d := lf.open(b, func(o *Options) { o.LDAP.CacheTTL, o.LDAP.NegativeTTL, o.LDAP.PoolSize = bc.ttl, bc.ttl, 4 })
			ctx := context.Background()
			if _, _, err := d.LookupContext(ctx, "bob@example.test"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					valid, _, err := d.LookupContext(ctx, "bob@example.test")
					if err != nil || len(valid) != 1 {
						b.Fatalf("lookup: %v %v", valid, err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
		})
	}
}
