package directory

// The reports of `appliance certs`: the folder's certificates with their state, the answer for
// one address and why, a one-line check, and what learning from a signed message filed. They
// are written as text lines; the caller makes them safe for a terminal.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"appliance/cms"
)

// ReportPolicy is what of the configuration the reports mention.
type ReportPolicy struct {
	// Newest: only the newest valid certificate gets a RecipientInfo (policy.cert_choice).
	Newest bool
	// MissingCert is policy.missing_cert, named when an address has no certificate.
	MissingCert string
	// Pinned are domains' content profiles (policy.domain), Profile the default one.
	Pinned  map[string]string
	Profile string
	// LDAP summarises directory.ldap ("" without it); CRLURLPrefixes are where CRLs are fetched.
	LDAP           string
	CRLURLPrefixes []string
}

// ErrNoUsableCertificate is [Directory.WriteCheck]'s error for an address without a usable
// certificate.
var ErrNoUsableCertificate = errors.New("no usable certificate")

// WriteList lists every certificate in the folder with its state at now, the sources, problems
// and identifiers claimed by more than one owner.
func (d *Directory) WriteList(w io.Writer, pol ReportPolicy, now time.Time) {
	fmt.Fprintf(w, "sources: %s\n", strings.Join(d.Sources(), ", "))
	if pol.LDAP != "" {
		fmt.Fprintf(w, "ldap: %s (searched per address; use show ADDRESS)\n", pol.LDAP)
	}
	if len(pol.CRLURLPrefixes) > 0 {
		fmt.Fprintf(w, "crl distribution points fetched from: %s\n", strings.Join(pol.CRLURLPrefixes, ", "))
	}
	for _, p := range d.Problems() {
		fmt.Fprintf(w, "problem: %v\n", p)
	}
	// A planted certificate claiming someone else's identifier: refused for encryption,
	// pass-through and lists until one of them is removed.
	for _, a := range d.Ambiguities() {
		fmt.Fprintf(w, "ambiguous: %s claimed by %s (refused)\n", a.ID, strings.Join(a.Owners, "; "))
	}
	entries := d.Entries()
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Address < entries[j].Address })
	for _, e := range entries {
		state := "ok"
		if err := d.ValidateFor(e.Cert, e.Address, now); err != nil {
			state = "refused: " + Reason(err)
		} else if err := d.CheckIdentifiers(e.Cert); err != nil {
			state = "refused: " + Reason(err)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Address, e.ID[:16], state, e.File)
	}
}

// WriteShow writes the directory's answer for addr and why: certificates used and refused, CRLs,
// the content profile. It returns the number of usable certificates.
func (d *Directory) WriteShow(ctx context.Context, w io.Writer, addr string, pol ReportPolicy) (int, error) {
	valid, rejected, err := d.LookupContext(ctx, addr)
	fmt.Fprintf(w, "address: %s\nsources: %s\n", addr, strings.Join(d.Sources(), ", "))
	if err != nil {
		fmt.Fprintf(w, "unavailable: %v\n", err)
		return 0, err
	}
	choice := "all valid certificates get a RecipientInfo"
	if pol.Newest {
		choice = "only the newest valid certificate gets a RecipientInfo"
	}
	fmt.Fprintf(w, "certificates: %d usable, %d refused (%s)\n", len(valid), len(rejected), choice)
	for i, e := range valid {
		use := "use"
		if i > 0 && pol.Newest {
			use = "skip (not the newest)"
		}
		fmt.Fprintf(w, "  %s %s\n", use, Describe(e.Cert))
		fmt.Fprintf(w, "      id %s, from %s %s\n", e.ID, e.Source, e.File)
	}
	for _, r := range rejected {
		fmt.Fprintf(w, "  refused %s\n      because %s (from %s)\n", Describe(r.Cert), Reason(r.Err), r.Source)
	}
	for _, st := range d.CRLStatus() {
		line := fmt.Sprintf("crl %s: fetched %s, next update %s, %d revoked", st.URL,
			st.Fetched.UTC().Format(time.RFC3339), st.NextUpdate.UTC().Format(time.RFC3339), st.Revoked)
		if st.LastError != nil {
			line += fmt.Sprintf(" (last fetch failed: %v)", st.LastError)
		}
		fmt.Fprintln(w, line)
	}
	if len(valid) == 0 {
		fmt.Fprintf(w, "profile: none (policy.missing_cert = %q applies)\n", pol.MissingCert)
		return 0, nil
	}
	profile, why := d.EffectiveProfile(addr, valid, pol.Pinned, pol.Profile)
	fmt.Fprintf(w, "profile: %s (%s)\n", profile, why)
	return len(valid), nil
}

// WriteCheck is [Directory.WriteShow] in one line; it fails with [ErrNoUsableCertificate] when
// addr has no usable certificate.
func (d *Directory) WriteCheck(ctx context.Context, w io.Writer, addr string, pol ReportPolicy) error {
	valid, rejected, err := d.LookupContext(ctx, addr)
	if err != nil {
		return err
	}
	if len(valid) == 0 {
		reasons := make([]string, 0, len(rejected))
		for _, r := range rejected {
			reasons = append(reasons, Reason(r.Err))
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "none found")
		}
		fmt.Fprintf(w, "%s: no usable certificate (%s)\n", addr, strings.Join(reasons, "; "))
		return fmt.Errorf("%w for %q", ErrNoUsableCertificate, addr)
	}
	profile, _ := d.EffectiveProfile(addr, valid, pol.Pinned, pol.Profile)
	fmt.Fprintf(w, "%s: ok, %d certificate(s), newest %s, profile %s\n", addr, len(valid), valid[0].ID[:16], profile)
	return nil
}

// LearnFile learns from the signed message in path ([Directory.Learn]) and writes what it filed.
func (d *Directory) LearnFile(ctx context.Context, w io.Writer, path string, pol ReportPolicy) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open message: %w", err)
	}
	msg, err := ReadMessage(f)
	f.Close()
	if err != nil {
		return err
	}
	l, err := d.Learn(msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "learnt %s: %s\n", l.Address, Describe(l.Cert))
	fmt.Fprintf(w, "  certificate %s\n  capabilities %s\n", l.CertFile, l.CapsFile)
	names := make([]string, 0, len(l.Capabilities))
	for _, c := range l.Capabilities {
		names = append(names, AlgorithmName(c.Algorithm))
	}
	if len(names) == 0 {
		names = append(names, "none announced")
	}
	fmt.Fprintf(w, "  announced: %s\n", strings.Join(names, ", "))
	fmt.Fprintln(w, "  a running daemon uses this after SIGHUP (or a restart)")
	if l.Unusable != nil {
		fmt.Fprintf(w, "  warning: the certificate is not usable for encryption: %s\n", Reason(l.Unusable))
	}
	valid, _, err := d.LookupContext(ctx, l.Address)
	if err == nil && len(valid) > 0 {
		profile, why := d.EffectiveProfile(l.Address, valid, pol.Pinned, pol.Profile)
		fmt.Fprintf(w, "  profile for %s: %s (%s)\n", l.Address, profile, why)
	}
	return nil
}

// Describe is a certificate in one line: subject, serial, issuer, validity.
func Describe(c *x509.Certificate) string {
	if c == nil {
		return "(no certificate)"
	}
	return fmt.Sprintf("%q serial %#x, issuer %q, valid %s to %s", c.Subject.String(), c.SerialNumber,
		c.Issuer.String(), c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"))
}

// Reason is a refusal without the certificate name a [*CertError] carries.
func Reason(err error) string {
	var ce *CertError
	if errors.As(err, &ce) {
		return ce.Err.Error()
	}
	return err.Error()
}

var algorithmNames = map[string]string{
	"2.16.840.1.101.3.4.1.46": "AES-256-GCM",
	"2.16.840.1.101.3.4.1.26": "AES-192-GCM",
	"2.16.840.1.101.3.4.1.6":  "AES-128-GCM",
	"2.16.840.1.101.3.4.1.42": "AES-256-CBC",
	"2.16.840.1.101.3.4.1.22": "AES-192-CBC",
	"2.16.840.1.101.3.4.1.2":  "AES-128-CBC",
	"1.2.840.113549.3.7":      "3DES-CBC",
	"1.2.840.113549.3.2":      "RC2-CBC",
	"1.2.840.113549.1.1.7":    "RSAES-OAEP",
	"1.2.840.113549.1.1.1":    "RSA PKCS#1 v1.5",
}

// AlgorithmName is the name of an SMIMECapabilities algorithm OID, or the OID.
func AlgorithmName(oid string) string {
	if n, ok := algorithmNames[oid]; ok {
		return n
	}
	return oid
}

// CertOwner is a certificate known outside the directory (a configured sender's) and its address.
type CertOwner struct {
	Address string
	Cert    *x509.Certificate
}

// Owners maps a RecipientInfo back to its owner's address: the directory (d may be nil), then
// others in order; "" when none matches.
func Owners(d *Directory, others []CertOwner) func(*cms.RecipientInfo) string {
	return func(ri *cms.RecipientInfo) string {
		if d != nil {
			if ri.SubjectKeyID != nil {
				if a, err := d.OwnerBySKI(ri.SubjectKeyID); err == nil {
					return a
				}
			} else if ri.Serial != nil {
				if a, err := d.OwnerByIssuerSerial(ri.Issuer, ri.Serial); err == nil {
					return a
				}
			}
		}
		for _, o := range others {
			if ri.Matches(o.Cert) {
				return o.Address
			}
		}
		return ""
	}
}
