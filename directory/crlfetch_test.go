package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crlServer serves one CRL body at /inter.crl, or a 503 when down, and
// counts requests.
type crlServer struct {
	*httptest.Server
	mu    sync.Mutex
	body  []byte
	down  bool
	count atomic.Int64
}

func newCRLServer(t *testing.T) *crlServer {
	s := &crlServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.count.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.down || r.URL.Path != "/inter.crl" {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		w.Write(s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *crlServer) set(body []byte, down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.down = body, down
}

func TestCRLFetch(t *testing.T) {
	p := testPKI(t)
	srv := newCRLServer(t)
	dp := srv.URL + "/inter.crl"
	withDP := func(cn, addr string, url string) *x509.Certificate {
		tmpl := leafTemplate(cn, addr)
		tmpl.CRLDistributionPoints = []string{url}
		return p.leaf(tmpl)
	}
	good := withDP("good", "good@example.test", dp)
	bad := withDP("bad", "bad@example.test", dp)
	elsewhere := withDP("elsewhere", "elsewhere@example.test", "http://127.0.0.2:1/other.crl")
	noDP := p.leaf(leafTemplate("nodp", "nodp@example.test"))
	f := newFixture(t)
	f.add(t, "certs.pem", good, bad, elsewhere, noDP)

	var now atomic.Int64
	now.Store(t0.UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()).UTC() }
	open := func(t *testing.T) *Directory {
		d, err := Open(Options{CertsDir: f.certs, RootsFile: f.roots, Now: clock,
			CRLFetch: &CRLFetchOptions{URLPrefixes: []string{srv.URL + "/"}, Refresh: time.Minute}})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	ctx := context.Background()
	lookup := func(d *Directory, addr string) ([]*Entry, []Rejection, error) { return d.LookupContext(ctx, addr) }

	t.Run("verdicts", func(t *testing.T) {
		srv.set(makeCRL(t, p.interA, p.interAKey, t0.Add(time.Hour), bad), false)
		d := open(t)
		for _, tt := range []struct {
			name string
			addr string
			want error
		}{
			{"ok not listed", "good@example.test", nil},
			{"ok distribution point outside the prefixes is not fetched", "elsewhere@example.test", nil},
			{"ok no distribution point", "nodp@example.test", nil},
			{"fail listed", "bad@example.test", ErrRevoked},
		} {
			t.Run(tt.name, func(t *testing.T) {
				valid, rejected, err := lookup(d, tt.addr)
				if err != nil {
					t.Fatal(err)
				}
				if tt.want == nil {
					if len(valid) != 1 {
						t.Fatalf("valid %v rejected %v", valid, rejected)
					}
					return
				}
				if len(valid) != 0 || len(rejected) != 1 || !errors.Is(rejected[0].Err, tt.want) {
					t.Fatalf("valid %v rejected %v, want %v", valid, rejected, tt.want)
				}
			})
		}
		if n := srv.count.Load(); n != 1 {
			t.Errorf("%d fetches, want 1 (one URL, cached until nextUpdate)", n)
		}
		if st := d.CRLStatus(); len(st) != 1 || st[0].Revoked != 1 || st[0].Fetched.IsZero() {
			t.Errorf("CRLStatus = %+v", st)
		}
	})

	t.Run("refreshed at nextUpdate", func(t *testing.T) {
		now.Store(t0.UnixNano())
		srv.set(makeCRL(t, p.interA, p.interAKey, t0.Add(time.Hour)), false)
		d := open(t)
		if v, _, err := lookup(d, "good@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("before revocation: %v %v", v, err)
		}
		srv.set(makeCRL(t, p.interA, p.interAKey, t0.Add(3*time.Hour), good), false)
		now.Add(int64(30 * time.Minute))
		if v, _, err := lookup(d, "good@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("before nextUpdate the old CRL holds: %v %v", v, err)
		}
		now.Add(int64(31 * time.Minute))
		if v, r, err := lookup(d, "good@example.test"); err != nil || len(v) != 0 || len(r) != 1 || !errors.Is(r[0].Err, ErrRevoked) {
			t.Fatalf("after nextUpdate: valid %v rejected %v err %v", v, r, err)
		}
	})

	t.Run("fail never fetched is unavailable, then a stale CRL is kept", func(t *testing.T) {
		now.Store(t0.UnixNano())
		srv.set(nil, true)
		d := open(t)
		_, _, err := lookup(d, "good@example.test")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		var tmp interface{ Temporary() bool }
		if !errors.As(err, &tmp) || !tmp.Temporary() {
			t.Fatalf("%v is not Temporary", err)
		}
		// Other recipients are not held up: no distribution point, no fetch.
		if v, _, err := lookup(d, "nodp@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("nodp: %v %v", v, err)
		}
		srv.set(makeCRL(t, p.interA, p.interAKey, t0.Add(time.Hour), bad), false)
		now.Add(int64(2 * time.Minute)) // past the retry interval
		if v, _, err := lookup(d, "good@example.test"); err != nil || len(v) != 1 {
			t.Fatalf("after the server came back: %v %v", v, err)
		}
		srv.set(nil, true)
		now.Add(int64(2 * time.Hour)) // due, but the server is down: keep the list
		if _, r, err := lookup(d, "bad@example.test"); err != nil || len(r) != 1 || !errors.Is(r[0].Err, ErrRevoked) {
			t.Fatalf("stale list not applied: %v %v", r, err)
		}
	})

	t.Run("fail CRL signed by another CA is not trusted", func(t *testing.T) {
		now.Store(t0.UnixNano())
		fakeIssuer := mustCert(caTemplate("Test Intermediate A"), p.rootB, p.rootBKey, p.rootBKey)
		srv.set(makeCRL(t, fakeIssuer, p.rootBKey, t0.Add(time.Hour), good), false)
		d := open(t)
		_, _, err := lookup(d, "good@example.test")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrCRLIssuer) {
			t.Fatalf("err = %v, want ErrUnavailable and ErrCRLIssuer", err)
		}
	})
}
