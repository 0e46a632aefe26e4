// Package directory answers "which valid encryption certificates does this
// address have", and the reverse question "whose certificate is this
// RecipientInfo identifier".
//
// Certificates come from a folder of files in any name: PEM (single or
// bundles, other block types ignored) or DER. They are indexed by the email
// addresses in subjectAltName, or by the subject's emailAddress attribute
// when the certificate has no rfc822Name at all. CA certificates found in
// the folder join the intermediates and are never recipients.
//
// Loading and validating are separate on purpose. Every parsed certificate
// is indexed, so the identifier of an expired or untrusted certificate
// still maps to its owner: for the privacy rule, an identifier in a
// RecipientInfo names a person whether or not the certificate is still
// good. Validity is decided at [Directory.Lookup] time against the clock,
// because certificates expire between reloads. [Directory.Validate] is the
// same check for certificates from elsewhere.
//
// A certificate is valid for encryption when it chains to a self-signed
// certificate of the roots file (its other certificates are intermediates),
// is inside its validity period, has keyEncipherment when keyUsage is
// present, has emailProtection when extKeyUsage is present, carries an RSA
// key of at least 2048 bits, and has no certificate in its chain listed by a
// CRL of the optional CRL folder. EC keys are refused until ECDH (RFC 5753)
// lands.
//
// # Sources
//
// The folder is one source; an LDAP server ([LDAPOptions]) is another,
// searched per address through a small connection pool behind a TTL cache
// that also remembers "no certificate". Sources are asked in the
// configured order and the first that has a valid certificate for an
// address answers, so a folder can override or stand in for LDAP. A source
// that cannot be asked (LDAP down) makes [Directory.LookupContext] fail
// with an [*UnavailableError], which is Temporary: a relay must defer such
// a message, never refuse its recipients as certificate-less.
//
// # Revocation
//
// Besides the CRL folder, CRLs can be fetched from the distribution points
// of the certificates in a chain ([CRLFetchOptions]), from configured URL
// prefixes only, and are fetched again at their nextUpdate. A certificate
// is refused when any CRL lists it; when a needed CRL was never obtained,
// the lookup is Unavailable rather than trusting an unchecked certificate.
//
// # Capabilities
//
// Each [Entry] carries the content profile its owner can read, learnt from
// a signed message ([Directory.Learn], stored as NAME.caps.json next to
// the certificate in the folder) or else from the certificate's
// sMIMECapabilities extension (RFC 4262): "modern" when AES-256-GCM is
// announced, "compat" otherwise, "" when nothing is known and policy
// decides.
//
// A [Directory] is an immutable snapshot behind an atomic pointer:
// lookups never block on a reload, and [Directory.Reload] (on SIGHUP)
// builds a new snapshot and swaps it in whole, or keeps the old one on
// failure; it also empties the LDAP cache.
package directory

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxFileSize bounds what is read per file: certificate bundles are small,
// and a stray large file in the folder should be reported, not read.
const maxFileSize = 4 << 20

// Options configure [Open].
type Options struct {
	CertsDir  string // folder of recipient certificates, read recursively
	RootsFile string // trust anchors plus intermediates
	// Now is the clock for [Directory.Lookup]; nil means time.Now.
	Now func() time.Time
	// CRLDir, when set, is a folder of CRLs (PEM "X509 CRL" blocks or
	// DER), each signed by a CA of the roots file or the certificates
	// folder. Certificates they list are refused.
	CRLDir string
	// CaseSensitiveLocalPart keeps local parts as written (RFC 5321);
	// by default they are case-folded like domains.
	CaseSensitiveLocalPart bool
	// Sources is the order in which sources are asked, each [SourceFolder]
	// or [SourceLDAP]; nil means the folder, then LDAP when configured.
	Sources []string
	// LDAP, when set, configures the LDAP source.
	LDAP *LDAPOptions
	// CRLFetch, when set, fetches CRLs from distribution points.
	CRLFetch *CRLFetchOptions
}

// Source names for [Options.Sources] and [Entry.Source].
const (
	SourceFolder = "folder"
	SourceLDAP   = "ldap"
)

// Entry is one recipient certificate for one address. Entries are shared
// between callers and must not be modified.
type Entry struct {
	Cert    *x509.Certificate
	Address string // as in the certificate, domain lower-cased
	ID      string // lowercase hex SHA-256 of the DER
	File    string // where it was loaded from: a path, or the LDAP URL and DN
	Source  string // SourceFolder or SourceLDAP
	// SMIMECaps are the certificate's sMIMECapabilities (RFC 4262), most
	// preferred first; nil when absent. See [SMIMECapabilities].
	SMIMECaps []asn1.ObjectIdentifier
	// Profile is the content profile the owner can read, learnt from a
	// signed message or else from SMIMECaps: [ProfileModern],
	// [ProfileCompat], or "" when nothing is known.
	Profile string
}

// Rejection is a certificate found for an address that is not usable;
// Err is a [*CertError].
type Rejection struct {
	Cert   *x509.Certificate
	Err    error
	Source string // where the certificate came from
}

// Directory is safe for concurrent use.
type Directory struct {
	opts    Options
	sources []string
	ldap    *ldapSource // nil without LDAP
	crls    *crlFetcher // nil without CRL fetching
	reload  sync.Mutex  // one Reload at a time
	snap    atomic.Pointer[snapshot]

	onLookup atomic.Pointer[func(hit bool)]
}

type snapshot struct {
	roots, intermediates *x509.CertPool
	byAddr               map[string][]*Entry // folded address -> entries
	ids                  *idIndex            // RecipientInfo identifiers -> owners (ambiguous.go)
	byID                 map[string]*Entry
	problems             []error
	cas                  []*x509.Certificate  // every CA known, to find CRL issuers
	revoked              map[string]time.Time // issuerSerialKey -> revocation time
	chainCache           sync.Map             // CertID -> cachedChain
	cached               atomic.Int64
	crls                 *crlFetcher            // shared with the Directory; nil when off
	learnt               map[string]*LearntCaps // folded address -> latest learnt
}

// Open loads the roots file and the certificates folder. It fails only when
// either cannot be read or the roots hold no self-signed certificate;
// problems with single files in the folder are listed by
// [Directory.Problems].
func Open(o Options) (*Directory, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	d := &Directory{opts: o, sources: o.Sources}
	if d.sources == nil {
		d.sources = []string{SourceFolder}
		if o.LDAP != nil {
			d.sources = append(d.sources, SourceLDAP)
		}
	}
	seen := map[string]bool{}
	for _, src := range d.sources {
		switch {
		case seen[src]:
			return nil, fmt.Errorf("failed to open directory: source %q listed twice", src)
		case src == SourceLDAP && o.LDAP == nil:
			return nil, fmt.Errorf("failed to open directory: source %q is not configured", src)
		case src != SourceFolder && src != SourceLDAP:
			return nil, fmt.Errorf("failed to open directory: unknown source %q", src)
		}
		seen[src] = true
	}
	if o.LDAP != nil {
		l, err := newLDAPSource(o.LDAP, o.Now, d.fold)
		if err != nil {
			return nil, fmt.Errorf("failed to open directory: %w", err)
		}
		d.ldap = l
	}
	if o.CRLFetch != nil {
		d.crls = newCRLFetcher(o.CRLFetch)
	}
	if err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

// Close releases the LDAP connections. Lookups after Close open new ones.
func (d *Directory) Close() error {
	if d.ldap != nil {
		d.ldap.close()
	}
	return nil
}

// Reload rereads roots and certificates and swaps them in atomically, and
// forgets cached LDAP answers. On error the previous state stays in use.
func (d *Directory) Reload() error {
	d.reload.Lock()
	defer d.reload.Unlock()
	s, err := load(d.opts)
	if err != nil {
		return err
	}
	s.crls = d.crls
	d.snap.Store(s)
	if d.ldap != nil {
		d.ldap.cache.flush()
	}
	return nil
}

// Sources returns the sources in the order they are asked.
func (d *Directory) Sources() []string { return append([]string(nil), d.sources...) }

// Problems returns the per-file problems of the last successful load, each
// a [*FileError].
func (d *Directory) Problems() []error {
	return append([]error(nil), d.snap.Load().problems...)
}

// Lookup is [Directory.LookupContext] without a context and without the
// error: a source that cannot be asked counts as having nothing. It suits
// a folder-only directory; with LDAP, use LookupContext so an outage
// defers mail instead of refusing recipients.
func (d *Directory) Lookup(addr string) (valid []*Entry, rejected []Rejection) {
	valid, rejected, _ = d.LookupContext(context.Background(), addr)
	return valid, rejected
}

// LookupContext asks the sources in order for addr's certificates and
// returns those of the first source that has a valid one, newest
// NotBefore first (so a "newest" policy takes valid[0]), with every
// certificate refused on the way and why. err is an [*UnavailableError]
// (Temporary) when no valid certificate was found and some source or CRL
// could not be consulted: the answer might have been different, so the
// caller must retry later rather than treat addr as certificate-less.
func (d *Directory) LookupContext(ctx context.Context, addr string) (valid []*Entry, rejected []Rejection, err error) {
	s := d.snap.Load()
	now := d.opts.Now()
	key := d.fold(addr)
	var unavailable error
	for _, src := range d.sources {
		var cands []*Entry
		switch src {
		case SourceFolder:
			cands = s.byAddr[key]
		case SourceLDAP:
			var ferr error
			if cands, ferr = d.ldap.find(ctx, key); ferr != nil {
				unavailable = cmpOr(unavailable, ferr)
				continue
			}
		}
		var v []*Entry
		for _, e := range cands {
			err := d.check(ctx, s, e, key, addr, now)
			if err == nil {
				err = d.CheckIdentifiers(e.Cert)
			}
			if err != nil {
				if errors.Is(err, ErrUnavailable) {
					unavailable = cmpOr(unavailable, err)
					continue
				}
				rejected = append(rejected, Rejection{Cert: e.Cert, Err: err, Source: src})
				continue
			}
			v = append(v, s.withProfile(key, e))
		}
		if len(v) > 0 {
			valid = v
			break
		}
	}
	if len(valid) == 0 && unavailable != nil {
		return nil, rejected, unavailable
	}
	if f := d.onLookup.Load(); f != nil {
		(*f)(len(valid) > 0)
	}
	if len(valid) > 1 { // a list looks up every member of every post; most have one
		sort.SliceStable(valid, func(i, j int) bool {
			return valid[i].Cert.NotBefore.After(valid[j].Cert.NotBefore)
		})
	}
	return valid, rejected, nil
}

// OnLookup has f told, after every lookup that got an answer, whether the address had a valid
// certificate (metrics); a lookup that could not ask a source is not reported.
func (d *Directory) OnLookup(f func(hit bool)) { d.onLookup.Store(&f) }

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// check validates one candidate; certificates from LDAP must also be
// issued for the address, since an entry found by mail= can hold others.
func (d *Directory) check(ctx context.Context, s *snapshot, e *Entry, key, addr string, now time.Time) error {
	if e.Source == SourceLDAP && !d.issuedFor(e.Cert, key) {
		return certError(e.Cert, fmt.Errorf("%w %q", ErrAddressMismatch, addr))
	}
	return s.validateCtx(ctx, e.Cert, now)
}

func (d *Directory) issuedFor(c *x509.Certificate, key string) bool {
	for _, a := range Addresses(c) {
		if d.fold(a) == key {
			return true
		}
	}
	return false
}

// Validate checks c for use as an encryption certificate at now against
// the current roots and intermediates. It does not look at addresses; see
// [Directory.ValidateFor]. Errors are [*CertError].
func (d *Directory) Validate(c *x509.Certificate, now time.Time) error {
	return d.snap.Load().validateCtx(context.Background(), c, now)
}

// ValidateFor is [Directory.Validate] plus the check that c is issued for
// addr (subjectAltName, or the subject's emailAddress when there is none).
func (d *Directory) ValidateFor(c *x509.Certificate, addr string, now time.Time) error {
	if err := d.Validate(c, now); err != nil {
		return err
	}
	want := d.fold(addr)
	for _, a := range Addresses(c) {
		if d.fold(a) == want {
			return nil
		}
	}
	return certError(c, fmt.Errorf("%w %q", ErrAddressMismatch, addr))
}

// ByID returns the entry whose certificate has this SHA-256 hex ID, valid or
// not, so a spooled plan can name certificates by ID and find them after a
// restart. Certificates from LDAP are found once a lookup has returned
// them in this process. Callers re-check with [Directory.Validate] where it
// matters.
func (d *Directory) ByID(id string) (*Entry, bool) {
	id = strings.ToLower(id)
	if e, ok := d.snap.Load().byID[id]; ok || d.ldap == nil {
		return e, ok
	}
	return d.ldap.seen.entry(id)
}

// Entries returns one entry per certificate of the folder, valid or not,
// in no particular order. LDAP cannot be listed; it is searched per
// address.
func (d *Directory) Entries() []*Entry {
	s := d.snap.Load()
	out := make([]*Entry, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, e)
	}
	return out
}

// Addresses returns the email addresses c is issued for: its rfc822Name
// subjectAltNames, or, when it has none, the emailAddress attributes of
// its subject (the pre-RFC 5280 habit some CAs keep).
func Addresses(c *x509.Certificate) []string {
	if len(c.EmailAddresses) > 0 {
		return append([]string(nil), c.EmailAddresses...)
	}
	var out []string
	for _, atv := range c.Subject.Names {
		if !atv.Type.Equal(oidEmailAddress) {
			continue
		}
		if s, ok := atv.Value.(string); ok && s != "" {
			out = append(out, s)
		}
	}
	return out
}

var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// fold makes the index key: domains are case-insensitive always, local
// parts unless configured otherwise.
func (d *Directory) fold(addr string) string {
	return foldAddress(addr, d.opts.CaseSensitiveLocalPart)
}

func foldAddress(addr string, caseSensitiveLocal bool) string {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return strings.ToLower(addr)
	}
	local, domain := addr[:at], strings.ToLower(strings.TrimSuffix(addr[at+1:], "."))
	if !caseSensitiveLocal {
		local = strings.ToLower(local)
	}
	return local + "@" + domain
}

func issuerSerialKey(issuer []byte, serial *big.Int) string {
	return string(issuer) + "\x00" + serial.Text(16)
}

// CertID is the identifier used in [Entry.ID]: the hex SHA-256 of the DER.
func CertID(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func load(o Options) (*snapshot, error) {
	rootCerts, err := LoadCertificates(o.RootsFile)
	if err != nil {
		return nil, fmt.Errorf("failed to load roots: %w", err)
	}
	s := &snapshot{
		roots:         x509.NewCertPool(),
		intermediates: x509.NewCertPool(),
		byAddr:        map[string][]*Entry{},
		ids:           newIDIndex(),
		byID:          map[string]*Entry{},
		revoked:       map[string]time.Time{},
		learnt:        map[string]*LearntCaps{},
	}
	nroots := 0
	s.cas = append(s.cas, rootCerts...)
	for _, c := range rootCerts {
		if isSelfSigned(c) {
			s.roots.AddCert(c)
			nroots++
		} else {
			s.intermediates.AddCert(c)
		}
	}
	if nroots == 0 {
		return nil, fmt.Errorf("failed to load roots %q: %w", o.RootsFile, ErrNoRoots)
	}

	// A missing or unreadable folder is an operator mistake to stop on, not
	// an empty directory to run with: every recipient would be refused.
	if st, err := os.Stat(o.CertsDir); err != nil {
		return nil, fmt.Errorf("failed to read certificates folder: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("failed to read certificates folder %q: not a directory", o.CertsDir)
	}
	// WalkDir does not follow a symlinked root, and /etc/appliance/certs
	// is often one (config management, Kubernetes volumes).
	root, err := filepath.EvalSymlinks(o.CertsDir)
	if err != nil {
		return nil, fmt.Errorf("failed to read certificates folder: %w", err)
	}
	err = s.walk(root, func(path string) {
		if strings.HasSuffix(path, capsSuffix) {
			s.addCapsFile(path, o.CaseSensitiveLocalPart)
			return
		}
		s.addFile(path, o.CaseSensitiveLocalPart)
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read certificates folder: %w", err)
	}
	for k, entries := range s.byAddr {
		for _, e := range entries {
			e.Profile = s.profileFor(k, e)
		}
	}
	if o.CRLDir != "" {
		if err := s.loadCRLs(o.CRLDir, o.Now()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// walk calls add for every regular file under root, skipping dot files
// (editor backups, tooling state) and recording unreadable entries as
// problems. It fails only when root itself cannot be read.
func (s *snapshot) walk(root string, add func(path string)) error {
	return filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			s.problems = append(s.problems, &FileError{Path: path, Err: err})
			return nil
		}
		if path != root && strings.HasPrefix(de.Name(), ".") {
			if de.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !de.IsDir() {
			add(path)
		}
		return nil
	})
}

func (s *snapshot) addFile(path string, caseSensitiveLocal bool) {
	problem := func(err error) { s.problems = append(s.problems, &FileError{Path: path, Err: err}) }
	certs, err := LoadCertificates(path)
	if err != nil {
		problem(err)
		return
	}
	for _, c := range certs {
		if c.IsCA {
			s.intermediates.AddCert(c)
			s.cas = append(s.cas, c)
			continue
		}
		id := CertID(c)
		if _, dup := s.byID[id]; dup {
			continue
		}
		addrs := Addresses(c)
		if len(addrs) == 0 {
			problem(certError(c, ErrNoAddress))
			continue
		}
		var first *Entry
		caps := SMIMECapabilities(c)
		for _, a := range addrs {
			e := &Entry{Cert: c, Address: foldAddress(a, true), ID: id, File: path, Source: SourceFolder, SMIMECaps: caps}
			if first == nil {
				first = e
			}
			k := foldAddress(a, caseSensitiveLocal)
			s.byAddr[k] = append(s.byAddr[k], e)
		}
		s.byID[id] = first
		// An identifier claimed by another owner's certificate too is
		// ambiguous (ambiguous.go).
		s.ids.add(c, first.Address)
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// LoadCertificates reads every certificate in a PEM file (one or a bundle;
// blocks other than CERTIFICATE are skipped) or a DER file (one or several
// concatenated), in file order.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open certificates: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read certificates %q: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("failed to read certificates %q: larger than %d bytes", path, maxFileSize)
	}
	certs, err := ParseCertificates(data)
	if err != nil {
		return nil, fmt.Errorf("failed to parse certificates %q: %w", path, err)
	}
	return certs, nil
}

// ErrNoCertificates is returned for input holding no certificate at all.
var ErrNoCertificates = errors.New("no certificates found")

// ParseCertificates is [LoadCertificates] on bytes.
func ParseCertificates(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, ErrNoCertificates
		}
		certs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("not PEM, and not DER: %w", err)
		}
		if len(certs) == 0 {
			return nil, ErrNoCertificates
		}
		return certs, nil
	}
	certs, err := parsePEM(data, "CERTIFICATE", x509.ParseCertificate)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificates
	}
	return certs, nil
}

// parsePEM parses every PEM block of type typ in data with parse, skipping other blocks.
func parsePEM[T any](data []byte, typ string, parse func([]byte) (T, error)) ([]T, error) {
	var out []T
	rest := data
	for n := 1; ; n++ {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out, nil
		}
		if b.Type != typ {
			continue
		}
		v, err := parse(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("failed to parse PEM block %d: %w", n, err)
		}
		out = append(out, v)
	}
}
