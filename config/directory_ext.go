package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Directory sources, in the spelling of directory.sources.
const (
	SourceFolder = "folder"
	SourceLDAP   = "ldap"
)

// LDAP TLS modes for ldap:// URLs (ldaps:// is TLS from the start).
const (
	LDAPTLSStartTLS = "starttls"
	LDAPTLSNone     = "none"
)

// An LDAP server to search for recipient certificates; off while url is empty.
type LDAP struct {
	// The server.
	// Value: ldap:// or ldaps:// URL
	// Example: "ldaps://ldap.example.test"
	URL string `toml:"url"`
	// For ldap:// only; default starttls. Leave unset for ldaps://.
	// Value: "starttls" or "none"
	// Example: "starttls"
	TLS string `toml:"tls"`
	// Verifies the server's certificate; default the system roots.
	// Value: path
	// Example: "/etc/appliance/ldap-ca.pem"
	CAFile string `toml:"ca_file"`
	// Bind as this DN (with bind_password_file); neither binds anonymously.
	// Example: "cn=appliance,dc=example,dc=test"
	BindDN string `toml:"bind_dn"`
	// The bind password.
	// Value: path
	// Example: "/etc/appliance/ldap-password"
	BindPasswordFile string `toml:"bind_password_file"`
	// Where to search.
	// Value: string, required with url
	// Example: "ou=people,dc=example,dc=test"
	BaseDN string `toml:"base_dn"`
	// The search filter; %s is the address, escaped.
	// Value: string, default "(mail=%s)"
	// Example: "(mail=%s)"
	Filter string `toml:"filter"`
	// Certificate attributes; default userCertificate;binary and userSMIMECertificate.
	// Example: ["userCertificate;binary", "userSMIMECertificate"]
	Attributes []string `toml:"attributes"`
	// Per search.
	// Value: duration, default "5s"
	// Example: "5s"
	Timeout time.Duration `toml:"timeout"`
	// Connections kept open.
	// Value: integer, default 4
	// Example: 4
	PoolSize int `toml:"pool_size"`
	// How long an answer is cached.
	// Value: duration, default "10m"
	// Example: "10m"
	CacheTTL time.Duration `toml:"cache_ttl"`
	// How long "no certificate" is cached.
	// Value: duration, default "1m"
	// Example: "1m"
	NegativeTTL time.Duration `toml:"negative_ttl"`
}

// Enabled reports whether an LDAP server is configured.
func (l LDAP) Enabled() bool { return l.URL != "" }

// StartTLS reports whether an ldap:// connection is upgraded.
func (l LDAP) StartTLS() bool {
	return strings.HasPrefix(strings.ToLower(l.URL), "ldap:") && l.TLS != LDAPTLSNone
}

// SourceOrder is directory.sources, or its default: the folder, then LDAP
// when configured.
func (d Directory) SourceOrder() []string {
	if len(d.Sources) > 0 {
		return d.Sources
	}
	if d.LDAP.Enabled() {
		return []string{SourceFolder, SourceLDAP}
	}
	return []string{SourceFolder}
}

func (d *Directory) resolve(abs func(*string)) {
	abs(&d.LDAP.CAFile)
	abs(&d.LDAP.BindPasswordFile)
}

func (c *Config) validateDirectoryExt(v *validator) {
	d := &c.Directory
	seen := map[string]bool{}
	for _, s := range d.Sources {
		switch {
		case s != SourceFolder && s != SourceLDAP:
			v.add("directory.sources", ErrInvalid, "%q is not one of %s", s, quoteList([]string{SourceFolder, SourceLDAP}))
		case seen[s]:
			v.add("directory.sources", ErrDuplicate, "%q is listed twice", s)
		case s == SourceLDAP && !d.LDAP.Enabled():
			v.add("directory.ldap.url", ErrMissing, "directory.sources lists \"ldap\"; give the server's URL")
		}
		seen[s] = true
	}
	if d.Sources != nil && len(d.Sources) == 0 {
		v.add("directory.sources", ErrInvalid, "at least one source")
	}
	if len(d.Sources) > 0 && d.LDAP.Enabled() && !seen[SourceLDAP] {
		v.add("directory.sources", ErrConflict, "[directory.ldap] is configured but \"ldap\" is not among the sources")
	}
	for i, p := range d.CRLURLPrefixes {
		u, err := url.Parse(p)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.add("directory.crl_url_prefixes", ErrInvalid, "entry %d (%q) is not an http:// or https:// URL", i+1, p)
		}
	}
	if d.CRLFetchTimeout != 0 && d.CRLFetchTimeout < 100*time.Millisecond {
		v.add("directory.crl_fetch_timeout", ErrInvalid, `%v is shorter than 100ms (durations are strings, e.g. "10s")`, d.CRLFetchTimeout)
	}
	if d.LDAP.Enabled() {
		validateLDAP(v, &d.LDAP)
	} else if d.LDAP.BaseDN != "" || d.LDAP.BindDN != "" {
		v.add("directory.ldap.url", ErrMissing, "the other [directory.ldap] settings need a url")
	}
}

func validateLDAP(v *validator, l *LDAP) {
	const k = "directory.ldap."
	u, err := url.Parse(l.URL)
	switch {
	case err != nil:
		v.add(k+"url", ErrInvalid, "%q: %v", l.URL, err)
	case u.Scheme != "ldap" && u.Scheme != "ldaps":
		v.add(k+"url", ErrInvalid, "%q: the scheme is ldap:// or ldaps://", l.URL)
	case u.Host == "":
		v.add(k+"url", ErrInvalid, "%q names no host", l.URL)
	case u.Scheme == "ldaps" && l.TLS != "":
		v.add(k+"tls", ErrConflict, "ldaps:// is TLS already; leave tls unset")
	default:
		optional(v, k+"tls", l.TLS, LDAPTLSStartTLS, LDAPTLSNone)
	}
	if strings.TrimSpace(l.BaseDN) == "" {
		v.add(k+"base_dn", ErrMissing, "where to search, e.g. \"ou=people,dc=example,dc=test\"")
	}
	if (l.BindDN == "") != (l.BindPasswordFile == "") {
		v.add(k+"bind_password_file", ErrConflict, "bind_dn and bind_password_file go together (neither binds anonymously)")
	}
	if l.Filter != "" && (strings.Count(l.Filter, "%s") != 1 || strings.Count(l.Filter, "%") != 1) {
		v.add(k+"filter", ErrInvalid, "%q must contain %%s exactly once, for the address, and no other %%", l.Filter)
	} else if l.Filter != "" && (!strings.HasPrefix(l.Filter, "(") || !strings.HasSuffix(l.Filter, ")")) {
		v.add(k+"filter", ErrInvalid, "%q is not a parenthesized LDAP filter", l.Filter)
	}
	if l.Attributes != nil && len(l.Attributes) == 0 {
		v.add(k+"attributes", ErrInvalid, "at least one attribute")
	}
	for _, a := range l.Attributes {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " ()=*") {
			v.add(k+"attributes", ErrInvalid, "%q is not an attribute description", a)
		}
	}
	durationRange(v, k+"timeout", l.Timeout, 100*time.Millisecond, 5*time.Minute)
	durationRange(v, k+"cache_ttl", l.CacheTTL, time.Second, 7*24*time.Hour)
	durationRange(v, k+"negative_ttl", l.NegativeTTL, time.Second, 7*24*time.Hour)
	if l.PoolSize != 0 {
		intRange(v, k+"pool_size", int64(l.PoolSize), 1, 256)
	}
}

// durationRange checks a duration that is optional (0 = default); tiny
// values are almost always an integer read as nanoseconds.
func durationRange(v *validator, key string, d, lo, hi time.Duration) {
	if d == 0 {
		return
	}
	if d < lo || d > hi {
		v.add(key, ErrInvalid, `%v is outside %v..%v (durations are strings, e.g. "5s")`, d, lo, hi)
	}
}

// LDAPSummary describes the LDAP source for check-config and logs,
// without the password.
func (l LDAP) LDAPSummary() string {
	if !l.Enabled() {
		return "off"
	}
	tls := "ldaps"
	if strings.HasPrefix(strings.ToLower(l.URL), "ldap:") {
		tls = "plaintext"
		if l.StartTLS() {
			tls = LDAPTLSStartTLS
		}
	}
	bind := "anonymous"
	if l.BindDN != "" {
		bind = fmt.Sprintf("bind %q", l.BindDN)
	}
	return fmt.Sprintf("%s (%s, %s, base %q)", l.URL, tls, bind, l.BaseDN)
}
