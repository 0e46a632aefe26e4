package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"

	"appliance/cms"
)

// LDAP defaults, used for zero fields of [LDAPOptions].
const (
	DefaultLDAPFilter      = "(mail=%s)"
	DefaultLDAPTimeout     = 5 * time.Second
	DefaultLDAPPoolSize    = 4
	DefaultLDAPCacheTTL    = 10 * time.Minute
	DefaultLDAPNegativeTTL = time.Minute
	DefaultLDAPCacheSize   = 100000
	// DefaultLDAPRetryAfter is how long lookups fail fast after the server
	// could not be reached, so that a message to 1000 recipients during an
	// outage costs one connection timeout, not 1000.
	DefaultLDAPRetryAfter = 5 * time.Second
)

// DefaultLDAPAttributes are read from each entry: X.509 certificates
// (RFC 4523, transferred with the ;binary option) and the PKCS #7 bundle
// of RFC 2798's inetOrgPerson.
var DefaultLDAPAttributes = []string{"userCertificate;binary", "userSMIMECertificate"}

// LDAPOptions configure the LDAP source.
type LDAPOptions struct {
	// URL is ldap://host[:port] or ldaps://host[:port]; the path is ignored.
	URL string
	// StartTLS upgrades an ldap:// connection before binding. Without it
	// the bind password and every looked-up address cross the network in
	// clear, which is acceptable only on loopback.
	StartTLS bool
	// TLSConfig verifies the server for ldaps:// and StartTLS; nil means
	// the system roots and the URL's host name.
	TLSConfig *tls.Config
	// BindDN and BindPassword authenticate; an empty BindDN binds
	// anonymously.
	BindDN, BindPassword string
	BaseDN               string
	// Filter has one %s for the address, escaped by RFC 4515 rules
	// before it is put in; "" means [DefaultLDAPFilter].
	Filter string
	// Attributes hold certificates: a name whose base (before ";") is
	// userSMIMECertificate is read as PKCS #7 SignedData, any other as one
	// DER certificate. nil means [DefaultLDAPAttributes].
	Attributes []string
	// Timeout bounds connecting and each request; 0 means
	// [DefaultLDAPTimeout].
	Timeout time.Duration
	// PoolSize bounds the connections kept open and used at once.
	PoolSize int
	// CacheTTL is how long an answer with certificates is reused,
	// NegativeTTL one without. Negative values disable caching (0 means
	// the default).
	CacheTTL, NegativeTTL time.Duration
	// CacheSize bounds the number of cached addresses.
	CacheSize int
	// RetryAfter is how long lookups fail at once after a connection
	// failure.
	RetryAfter time.Duration
}

func (o *LDAPOptions) withDefaults() (LDAPOptions, error) {
	c := *o
	u, err := url.Parse(c.URL)
	if err != nil {
		return c, fmt.Errorf("failed to parse LDAP URL %q: %w", c.URL, err)
	}
	if u.Scheme != "ldap" && u.Scheme != "ldaps" {
		return c, fmt.Errorf("failed to parse LDAP URL %q: scheme must be ldap or ldaps", c.URL)
	}
	if u.Host == "" {
		return c, fmt.Errorf("failed to parse LDAP URL %q: no host", c.URL)
	}
	if c.Filter == "" {
		c.Filter = DefaultLDAPFilter
	}
	if strings.Count(c.Filter, "%s") != 1 || strings.Count(c.Filter, "%") != 1 {
		return c, fmt.Errorf("LDAP filter %q must contain %%s exactly once and no other %%", c.Filter)
	}
	if c.Attributes == nil {
		c.Attributes = DefaultLDAPAttributes
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultLDAPTimeout
	}
	if c.PoolSize <= 0 {
		c.PoolSize = DefaultLDAPPoolSize
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultLDAPCacheTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultLDAPNegativeTTL
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultLDAPCacheSize
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = DefaultLDAPRetryAfter
	}
	if c.TLSConfig == nil {
		c.TLSConfig = &tls.Config{}
	} else {
		c.TLSConfig = c.TLSConfig.Clone()
	}
	if c.TLSConfig.ServerName == "" {
		c.TLSConfig.ServerName = u.Hostname()
	}
	if c.TLSConfig.MinVersion == 0 {
		c.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return c, nil
}

// ldapSource searches one LDAP server through a small pool of bound
// connections, behind a TTL cache.
type ldapSource struct {
	opts  LDAPOptions
	now   func() time.Time
	fold  func(string) string
	cache *ttlCache
	// slots bounds connections in use; idle holds bound ones to reuse.
	slots chan struct{}
	idle  chan *ldap.Conn

	mu        sync.Mutex
	downUntil time.Time
	downErr   error

	// seen indexes the certificates LDAP has returned, so RecipientInfo
	// identifiers and IDs in spooled plans can be mapped back to owners.
	seen *seenIndex
}

func newLDAPSource(o *LDAPOptions, now func() time.Time, fold func(string) string) (*ldapSource, error) {
	opts, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	return &ldapSource{
		opts:  opts,
		now:   now,
		fold:  fold,
		cache: newTTLCache(opts.CacheSize),
		slots: make(chan struct{}, opts.PoolSize),
		idle:  make(chan *ldap.Conn, opts.PoolSize),
		seen:  newSeenIndex(maxChainCache),
	}, nil
}

func (l *ldapSource) name() string { return "ldap " + l.opts.URL }

// find returns the certificates the directory holds for addr (already
// folded), from the cache when fresh. Every failure is an
// [*UnavailableError].
func (l *ldapSource) find(ctx context.Context, key string) ([]*Entry, error) {
	now := l.now()
	if entries, ok := l.cache.get(key, now); ok {
		return entries, nil
	}
	entries, err := l.search(ctx, key)
	if err != nil {
		return nil, &UnavailableError{Source: l.name(), Err: err}
	}
	ttl := l.opts.CacheTTL
	if len(entries) == 0 {
		ttl = l.opts.NegativeTTL
	}
	if ttl > 0 {
		l.cache.put(key, entries, now.Add(ttl))
	}
	for _, e := range entries {
		l.seen.add(e)
	}
	return entries, nil
}

func (l *ldapSource) search(ctx context.Context, key string) ([]*Entry, error) {
	if err := l.checkDown(); err != nil {
		return nil, err
	}
	req := ldap.NewSearchRequest(l.opts.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		maxLDAPEntries, int(l.opts.Timeout/time.Second)+1, false,
		fmt.Sprintf(l.opts.Filter, ldap.EscapeFilter(key)), l.opts.Attributes, nil)
	// A pooled connection may have been cut since its last use (server
	// restart, idle timeout); one retry on a fresh connection tells that
	// apart from an outage.
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		conn, err := l.get(ctx)
		if err != nil {
			// The caller's deadline says nothing about the server.
			if ctx.Err() == nil {
				l.markDown(err)
			}
			return nil, err
		}
		timeout := l.opts.Timeout
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
			timeout = max(time.Until(dl), time.Millisecond)
		}
		conn.SetTimeout(timeout)
		res, err := conn.Search(req)
		if err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) && res != nil {
			l.put(conn, true)
			return l.entries(res, key), nil
		}
		if ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			// The base DN is absent: no entry can match. Reported as an
			// error all the same, since it is a configuration mistake
			// that would otherwise refuse every recipient.
			l.put(conn, true)
			return nil, fmt.Errorf("failed to search %q: %w", l.opts.BaseDN, err)
		}
		l.put(conn, false)
		lastErr = fmt.Errorf("failed to search %q: %w", l.opts.BaseDN, err)
		if !isConnError(err) {
			break
		}
		// Its idle siblings went to the same server and are likely cut
		// too: the retry must dial, not draw another dead one.
		l.close()
	}
	l.markDown(lastErr)
	return nil, lastErr
}

// maxLDAPEntries bounds the entries one address may match; more is a
// filter mistake, not a person.
const maxLDAPEntries = 16

func isConnError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || ldap.IsErrorAnyOf(err, ldap.ErrorNetwork, ldap.LDAPResultServerDown,
		ldap.LDAPResultConnectError, ldap.LDAPResultTimeout, ldap.LDAPResultUnavailable, ldap.LDAPResultBusy)
}

func (l *ldapSource) checkDown() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.now().Before(l.downUntil) {
		return fmt.Errorf("not retrying until %s: %w", l.downUntil.UTC().Format(time.RFC3339), l.downErr)
	}
	return nil
}

func (l *ldapSource) markDown(err error) {
	if !isConnError(err) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.downUntil, l.downErr = l.now().Add(l.opts.RetryAfter), err
}

// get returns a bound connection: an idle one, or a new one once a slot
// is free.
func (l *ldapSource) get(ctx context.Context) (*ldap.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		select {
		case c := <-l.idle:
			if c.IsClosing() {
				c.Close()
				continue
			}
			return c, nil
		default:
		}
		c, err := l.dial(ctx)
		if err != nil {
			<-l.slots
			return nil, err
		}
		return c, nil
	}
}

func (l *ldapSource) put(c *ldap.Conn, healthy bool) {
	if healthy && !c.IsClosing() {
		select {
		case l.idle <- c:
		default:
			c.Close()
		}
	} else {
		c.Close()
	}
	<-l.slots
}

func (l *ldapSource) dial(ctx context.Context) (*ldap.Conn, error) {
	timeout := l.opts.Timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = max(time.Until(dl), time.Millisecond)
	}
	c, err := ldap.DialURL(l.opts.URL,
		ldap.DialWithDialer(&net.Dialer{Timeout: timeout}),
		ldap.DialWithTLSConfig(l.opts.TLSConfig))
	if err != nil {
		return nil, fmt.Errorf("failed to connect: %w", err)
	}
	c.SetTimeout(timeout)
	if l.opts.StartTLS && strings.HasPrefix(strings.ToLower(l.opts.URL), "ldap:") {
		if err := c.StartTLS(l.opts.TLSConfig); err != nil {
			c.Close()
			return nil, fmt.Errorf("failed to start TLS: %w", err)
		}
	}
	if l.opts.BindDN != "" {
		err = c.Bind(l.opts.BindDN, l.opts.BindPassword)
	} else {
		err = c.UnauthenticatedBind("")
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("failed to bind as %q: %w", l.opts.BindDN, err)
	}
	return c, nil
}

// entries turns search results into entries, one per certificate and
// address the certificate names (an entry found for one address may hold
// certificates of others; the lookup refuses those). Values that are not
// certificates are skipped: one bad value must not hide the good ones.
func (l *ldapSource) entries(res *ldap.SearchResult, key string) []*Entry {
	var out []*Entry
	seen := map[string]bool{}
	for _, le := range res.Entries {
		for _, a := range le.Attributes {
			base, _, _ := strings.Cut(a.Name, ";")
			for _, v := range a.ByteValues {
				for _, c := range certsFromValue(base, v) {
					id := CertID(c)
					if seen[id] || c.IsCA {
						continue
					}
					seen[id] = true
					caps := SMIMECapabilities(c)
					out = append(out, &Entry{
						Cert:      c,
						Address:   l.address(c, key),
						ID:        id,
						File:      l.opts.URL + "/" + le.DN,
						Source:    SourceLDAP,
						SMIMECaps: caps,
						Profile:   ProfileFromCapabilities(caps),
					})
				}
			}
		}
	}
	return out
}

func certsFromValue(attr string, v []byte) []*x509.Certificate {
	if strings.EqualFold(attr, "userSMIMECertificate") {
		s, err := cms.ParseSigned(v)
		if err != nil {
			return nil
		}
		return s.Certificates
	}
	c, err := x509.ParseCertificate(v)
	if err != nil {
		return nil
	}
	return []*x509.Certificate{c}
}

// address is the address of c that matches key as written in c (domain
// lower-cased), or its first address when none matches.
func (l *ldapSource) address(c *x509.Certificate, key string) string {
	addrs := Addresses(c)
	for _, a := range addrs {
		if l.fold(a) == key {
			return foldAddress(a, true)
		}
	}
	if len(addrs) > 0 {
		return foldAddress(addrs[0], true)
	}
	return ""
}

// close closes the idle connections; those in use close when put back
// unhealthy, or stay for reuse.
func (l *ldapSource) close() {
	for {
		select {
		case c := <-l.idle:
			c.Close()
		default:
			return
		}
	}
}
