package directory

import (
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// CRL fetching defaults.
const (
	DefaultCRLFetchTimeout = 10 * time.Second
	// DefaultCRLRefresh is when a CRL without a usable nextUpdate is
	// fetched again, and how soon a failed fetch is retried.
	DefaultCRLRefresh = 5 * time.Minute
	// maxCRLSize bounds a fetched CRL; large CAs publish a few MB.
	maxCRLSize = 32 << 20
)

// CRLFetchOptions turn on fetching CRLs from the distribution points
// (RFC 5280 section 4.2.1.13) named in recipients' certificates and their
// intermediates.
type CRLFetchOptions struct {
	// URLPrefixes are the only places fetched from, e.g.
	// "http://crl.example.test/". A distribution point outside them is
	// ignored: a certificate must not be able to make the relay send
	// requests to wherever it names.
	URLPrefixes []string
	// Client makes the requests; nil means one with Timeout.
	Client *http.Client
	// Timeout bounds one fetch; 0 means [DefaultCRLFetchTimeout].
	Timeout time.Duration
	// Refresh is the re-fetch interval for a CRL whose nextUpdate is absent
	// or past, and the retry interval after a failure; 0 means
	// [DefaultCRLRefresh].
	Refresh time.Duration
}

// crlFetcher keeps one current CRL per distribution point URL. It lives on
// the Directory, not on a snapshot, so a reload does not fetch everything
// again.
type crlFetcher struct {
	opts   CRLFetchOptions
	client *http.Client
	mu     sync.Mutex
	byURL  map[string]*fetchedCRL // URL and issuer -> state
}

type fetchedCRL struct {
	mu       sync.Mutex // one fetch per URL at a time
	url      string
	revoked  map[string]struct{}
	next     time.Time // refetch from then on
	have     bool      // a list was fetched once
	err      error     // last failure, while nothing was ever fetched
	retryAt  time.Time
	fetched  time.Time
	nextUpd  time.Time // the CRL's own nextUpdate
	lastFail error
}

func newCRLFetcher(o *CRLFetchOptions) *crlFetcher {
	opts := *o
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultCRLFetchTimeout
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultCRLRefresh
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: opts.Timeout}
	}
	return &crlFetcher{opts: opts, client: client, byURL: map[string]*fetchedCRL{}}
}

func (f *crlFetcher) allowed(u string) bool {
	for _, p := range f.opts.URLPrefixes {
		if p != "" && strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// revokedIn returns the first certificate of chain (root excepted) that
// a CRL from its distribution points lists, or nil. issuer of chain[i] is
// chain[i+1]; a CRL must be signed by it. An error means a CRL was needed
// and none could be had: the caller cannot tell revoked from good.
func (f *crlFetcher) revokedIn(ctx context.Context, chain []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	for i, c := range chain[:len(chain)-1] {
		issuer := chain[i+1]
		for _, u := range c.CRLDistributionPoints {
			if !f.allowed(u) {
				continue
			}
			revoked, err := f.get(u, issuer).current(ctx, f, u, issuer, now)
			if err != nil {
				return nil, &UnavailableError{Source: "crl " + u, Err: err}
			}
			if _, ok := revoked[c.SerialNumber.Text(16)]; ok {
				return c, nil
			}
		}
	}
	return nil, nil
}

// get returns the state for the CRL at u as signed by issuer: keyed by
// both, so two CAs naming one URL (a misconfiguration) cannot make one
// CA's list apply to the other's certificates.
func (f *crlFetcher) get(u string, issuer *x509.Certificate) *fetchedCRL {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := u + "\x00" + string(issuer.RawSubject)
	e := f.byURL[k]
	if e == nil {
		e = &fetchedCRL{url: u}
		f.byURL[k] = e
	}
	return e
}

// current returns the revoked serials of the CRL at u, fetching it when
// it is due. A CRL that cannot be refreshed stays in use (an old list of
// revoked certificates is better than none); only a CRL never fetched is
// an error.
func (e *fetchedCRL) current(ctx context.Context, f *crlFetcher, u string, issuer *x509.Certificate, now time.Time) (map[string]struct{}, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.have && now.Before(e.next) {
		return e.revoked, nil
	}
	if !e.have && e.err != nil && now.Before(e.retryAt) {
		return nil, e.err
	}
	if e.have && now.Before(e.retryAt) {
		return e.revoked, nil
	}
	revoked, nextUpdate, err := f.fetch(ctx, u, issuer)
	if err != nil {
		e.retryAt = now.Add(f.opts.Refresh)
		e.lastFail = err
		if e.have {
			return e.revoked, nil
		}
		e.err = err
		return nil, err
	}
	e.have, e.err, e.lastFail = true, nil, nil
	e.revoked, e.fetched, e.nextUpd = revoked, now, nextUpdate
	e.next = nextUpdate
	if nextUpdate.IsZero() || !nextUpdate.After(now) {
		e.next = now.Add(f.opts.Refresh)
	}
	e.retryAt = time.Time{}
	return revoked, nil
}

func (f *crlFetcher) fetch(ctx context.Context, u string, issuer *x509.Certificate) (map[string]struct{}, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to fetch CRL: %w", err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to fetch CRL: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, time.Time{}, fmt.Errorf("failed to fetch CRL: HTTP status %q", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxCRLSize+1))
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to fetch CRL: %w", err)
	}
	if len(data) > maxCRLSize {
		return nil, time.Time{}, fmt.Errorf("failed to fetch CRL: larger than %d bytes", maxCRLSize)
	}
	crls, err := ParseCRLs(data)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("failed to parse CRL: %w", err)
	}
	crl := crls[0]
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) || crl.CheckSignatureFrom(issuer) != nil {
		return nil, time.Time{}, fmt.Errorf("%w: issuer %q, expected %q", ErrCRLIssuer, crl.Issuer.String(), issuer.Subject.String())
	}
	revoked := make(map[string]struct{}, len(crl.RevokedCertificateEntries))
	for _, r := range crl.RevokedCertificateEntries {
		revoked[r.SerialNumber.Text(16)] = struct{}{}
	}
	return revoked, crl.NextUpdate, nil
}

// CRLStatus is the state of one fetched distribution point, for the
// `appliance certs` command.
type CRLStatus struct {
	URL        string
	Fetched    time.Time // zero: never
	NextUpdate time.Time
	Revoked    int
	LastError  error
}

// CRLStatus lists the distribution points fetched so far.
func (d *Directory) CRLStatus() []CRLStatus {
	if d.crls == nil {
		return nil
	}
	d.crls.mu.Lock()
	all := make([]*fetchedCRL, 0, len(d.crls.byURL))
	for _, e := range d.crls.byURL {
		all = append(all, e)
	}
	d.crls.mu.Unlock()
	var out []CRLStatus
	for _, e := range all {
		e.mu.Lock()
		st := CRLStatus{URL: e.url, Fetched: e.fetched, NextUpdate: e.nextUpd, Revoked: len(e.revoked), LastError: e.lastFail}
		if st.LastError == nil {
			st.LastError = e.err
		}
		e.mu.Unlock()
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URL < out[j].URL })
	return out
}
