package directory

// Checks for `appliance check-config -connect`: a signing key's certificate (in date, for the
// key, naming the address, chaining to the roots) and the LDAP bind, each reported to a
// Reporter as ok, warn or fail with its reason.

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Reporter receives the outcome of each check, one call a line.
type Reporter interface {
	OK(what, detail string)
	Warn(what, detail string)
	Fail(what string, err error)
}

// ExpirySoon: a certificate expiring within this is a warning.
const ExpirySoon = 30 * 24 * time.Hour

// CertAddresses are the mail addresses a certificate vouches for: its rfc822Name SANs and, for
// older certificates, the emailAddress attribute of its subject (both, unlike [Addresses]).
func CertAddresses(cert *x509.Certificate) []string {
	out := append([]string(nil), cert.EmailAddresses...)
	for _, n := range cert.Subject.Names {
		if s, ok := n.Value.(string); ok && n.Type.Equal(asn1.ObjectIdentifier(oidEmailAddress)) {
			out = append(out, s)
		}
	}
	return out
}

// CoversAddress reports whether cert names addr (case-insensitively), as [CertAddresses] reads it.
func CoversAddress(cert *x509.Certificate, addr string) bool {
	for _, a := range CertAddresses(cert) {
		if strings.EqualFold(a, addr) {
			return true
		}
	}
	return false
}

// LoadRoots reads a roots file: self-signed CA certificates are roots, the rest intermediates.
func LoadRoots(file string) (roots, inters *x509.CertPool, err error) {
	roots, inters = x509.NewCertPool(), x509.NewCertPool()
	certs, err := LoadCertificates(file)
	if err != nil {
		return roots, inters, err
	}
	for _, c := range certs {
		if c.IsCA && c.CheckSignatureFrom(c) == nil {
			roots.AddCert(c)
		} else {
			inters.AddCert(c)
		}
	}
	return roots, inters, nil
}

// CheckExpiry reports c as failed when out of date, a warning within [ExpirySoon] of its end,
// else ok.
func CheckExpiry(r Reporter, what string, c *x509.Certificate, now time.Time) {
	left := c.NotAfter.Sub(now)
	desc := fmt.Sprintf("%q expires %s", c.Subject.String(), c.NotAfter.UTC().Format(time.DateOnly))
	switch {
	case left <= 0:
		r.Fail(what, fmt.Errorf("certificate %q expired %s", c.Subject.String(), c.NotAfter.UTC().Format(time.DateOnly)))
	case now.Before(c.NotBefore):
		r.Fail(what, fmt.Errorf("certificate %q is not valid before %s", c.Subject.String(), c.NotBefore.UTC().Format(time.DateOnly)))
	case left < ExpirySoon:
		r.Warn(what, fmt.Sprintf("%s, in %d day(s): renew it", desc, int(left.Hours()/24)))
	default:
		r.OK(what, fmt.Sprintf("%s (in %d days)", desc, int(left.Hours()/24)))
	}
}

// CheckSignerCert checks the certificate chain in certPath of the key keyURI (whose public key
// is pub, nil when the key could not be read): present, in date, for the same key, naming addr,
// issued under roots (inters gains the chain's intermediates).
func CheckSignerCert(r Reporter, what, addr, keyURI string, pub crypto.PublicKey, certPath string, roots, inters *x509.CertPool, now time.Time) {
	chain, err := LoadChain(certPath)
	if err != nil {
		r.Fail(what+" certificate", err)
		return
	}
	leaf := chain[0]
	CheckExpiry(r, what+" certificate", leaf, now)
	if k, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); pub != nil && (!ok || !k.Equal(pub)) {
		r.Fail(what+" certificate", fmt.Errorf("%q is not for the key %s", leaf.Subject.String(), keyURI))
	}
	if !CoversAddress(leaf, addr) {
		r.Fail(what+" certificate", fmt.Errorf("%q does not name %s (it names: %s)", leaf.Subject.String(), addr, strings.Join(CertAddresses(leaf), ", ")))
	}
	for _, c := range chain[1:] {
		inters.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		r.Fail(what+" certificate", fmt.Errorf("does not verify to directory.roots: %w", err))
	}
}

// CheckLDAPBind connects to o.URL and binds as o says (StartTLS, bind DN), each step bounded by
// timeout. It returns how it bound ("as DN" or "anonymously").
func CheckLDAPBind(o *LDAPOptions, timeout time.Duration) (string, error) {
	tc := o.TLSConfig
	if tc == nil {
		tc = &tls.Config{}
	}
	c, err := ldap.DialURL(o.URL, ldap.DialWithDialer(&net.Dialer{Timeout: timeout}), ldap.DialWithTLSConfig(tc))
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetTimeout(timeout)
	if o.StartTLS {
		if host := ldapURLHost(o.URL); tc.ServerName == "" {
			tc = tc.Clone()
			tc.ServerName = host
		}
		if err := c.StartTLS(tc); err != nil {
			return "", fmt.Errorf("StartTLS: %w", err)
		}
	}
	who := "anonymously"
	if o.BindDN != "" {
		who = "as " + o.BindDN
		err = c.Bind(o.BindDN, o.BindPassword)
	} else {
		err = c.UnauthenticatedBind("")
	}
	if err != nil {
		return "", fmt.Errorf("bind %s: %w", who, err)
	}
	return who, nil
}

func ldapURLHost(u string) string {
	rest := u[strings.Index(u, "://")+3:]
	rest, _, _ = strings.Cut(rest, "/")
	if h, _, err := net.SplitHostPort(rest); err == nil {
		return h
	}
	return rest
}

// LoadChain reads a certificate chain, leaf first; a file without a certificate is an error.
func LoadChain(file string) ([]*x509.Certificate, error) {
	chain, err := LoadCertificates(file)
	if err == nil && len(chain) == 0 {
		err = fmt.Errorf("no certificate in %q", file)
	}
	return chain, err
}
