package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"appliance/config"
	"appliance/directory"
)

// directoryOptions maps the configuration onto the directory's options; serve, seal, inspect and
// certs all open the directory through it so they see the same sources.
func directoryOptions(cfg *config.Config) (directory.Options, error) {
	d := cfg.Directory
	o := directory.Options{
		CertsDir:               d.Certs,
		RootsFile:              d.Roots,
		CRLDir:                 d.CRLs,
		CaseSensitiveLocalPart: d.CaseSensitiveLocalPart,
		Sources:                d.SourceOrder(),
	}
	if len(d.CRLURLPrefixes) > 0 {
		o.CRLFetch = &directory.CRLFetchOptions{URLPrefixes: d.CRLURLPrefixes, Timeout: d.CRLFetchTimeout}
	}
	if !d.LDAP.Enabled() {
		return o, nil
	}
	l := d.LDAP
	lo := &directory.LDAPOptions{
		URL:         l.URL,
		StartTLS:    l.StartTLS(),
		BindDN:      l.BindDN,
		BaseDN:      l.BaseDN,
		Filter:      l.Filter,
		Attributes:  l.Attributes,
		Timeout:     l.Timeout,
		PoolSize:    l.PoolSize,
		CacheTTL:    l.CacheTTL,
		NegativeTTL: l.NegativeTTL,
	}
	if l.BindPasswordFile != "" {
		pw, err := os.ReadFile(l.BindPasswordFile)
		if err != nil {
			return o, fmt.Errorf("failed to read directory.ldap.bind_password_file: %w", err)
		}
		// One trailing newline is what editors and echo add; it is never part of the password.
		lo.BindPassword = strings.TrimSuffix(strings.TrimSuffix(string(pw), "\n"), "\r")
	}
	if l.CAFile != "" {
		pemData, err := os.ReadFile(l.CAFile)
		if err != nil {
			return o, fmt.Errorf("failed to read directory.ldap.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return o, fmt.Errorf("failed to read directory.ldap.ca_file %q: no PEM certificate", l.CAFile)
		}
		lo.TLSConfig = &tls.Config{RootCAs: pool}
	}
	o.LDAP = lo
	return o, nil
}

// openDirectory opens the certificate directory a configuration describes.
func openDirectory(cfg *config.Config) (*directory.Directory, error) {
	o, err := directoryOptions(cfg)
	if err != nil {
		return nil, err
	}
	return directory.Open(o)
}

const certsSynopsis = `list|show ADDRESS|check ADDRESS|learn FILE.eml -config FILE

  list            every certificate in the folder, with its state, the sources in use, and
                  identifiers (SKI, issuer and serial) claimed by more than one owner
  show ADDRESS    what the directory would use for ADDRESS and why: certificates, refusals, profile
  check ADDRESS   like show, one line; exit status 1 when ADDRESS has no usable certificate
  learn FILE.eml  import the signer's certificate and SMIMECapabilities of a signed message
                  into the certificates folder (then SIGHUP a running daemon)`

// runCerts is `appliance certs`: it never needs the HSM.
func runCerts(args []string, stdout, stderr io.Writer) error {
	stdout = escapingWriter{stdout} // subjects and addresses come from certificates
	fs := newFlags("certs", certsSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	// Flags may come before or after the subcommand and its argument.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, rest := pos[0], pos[1:]
	wantArgs := map[string]int{"list": 0, "show": 1, "check": 1, "learn": 1}
	n, ok := wantArgs[sub]
	if !ok {
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	if len(rest) != n {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	dir, err := openDirectory(cfg)
	if err != nil {
		return err
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(bgctx(), time.Minute)
	defer cancel()
	switch sub {
	case "list":
		return certsList(cfg, dir, stdout)
	case "show":
		_, err := certsShow(ctx, cfg, dir, rest[0], stdout)
		return err
	case "check":
		return certsCheck(ctx, cfg, dir, rest[0], stdout)
	default:
		return certsLearn(cfg, dir, rest[0], stdout)
	}
}

func certsList(cfg *config.Config, dir *directory.Directory, w io.Writer) error {
	fmt.Fprintf(w, "sources: %s\n", strings.Join(dir.Sources(), ", "))
	if cfg.Directory.LDAP.Enabled() {
		fmt.Fprintf(w, "ldap: %s (searched per address; use show ADDRESS)\n", cfg.Directory.LDAP.LDAPSummary())
	}
	if len(cfg.Directory.CRLURLPrefixes) > 0 {
		fmt.Fprintf(w, "crl distribution points fetched from: %s\n", strings.Join(cfg.Directory.CRLURLPrefixes, ", "))
	}
	for _, p := range dir.Problems() {
		fmt.Fprintf(w, "problem: %v\n", p)
	}
	// A planted certificate claiming someone else's identifier: refused for encryption,
	// pass-through and lists until one of them is removed.
	for _, a := range dir.Ambiguities() {
		fmt.Fprintf(w, "ambiguous: %s claimed by %s (refused)\n", a.ID, strings.Join(a.Owners, "; "))
	}
	now := time.Now()
	entries := dir.Entries()
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Address < entries[j].Address })
	for _, e := range entries {
		state := "ok"
		if err := dir.ValidateFor(e.Cert, e.Address, now); err != nil {
			state = "refused: " + reason(err)
		} else if err := dir.CheckIdentifiers(e.Cert); err != nil {
			state = "refused: " + reason(err)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.Address, e.ID[:16], state, e.File)
	}
	return nil
}

// certsShow prints the directory's answer for addr and returns the number of usable
// certificates.
func certsShow(ctx context.Context, cfg *config.Config, dir *directory.Directory, addr string, w io.Writer) (int, error) {
	valid, rejected, err := dir.LookupContext(ctx, addr)
	fmt.Fprintf(w, "address: %s\nsources: %s\n", addr, strings.Join(dir.Sources(), ", "))
	if err != nil {
		fmt.Fprintf(w, "unavailable: %v\n", err)
		return 0, err
	}
	choice := "all valid certificates get a RecipientInfo"
	if cfg.Policy.CertChoice == config.CertChoiceNewest {
		choice = "only the newest valid certificate gets a RecipientInfo"
	}
	fmt.Fprintf(w, "certificates: %d usable, %d refused (%s)\n", len(valid), len(rejected), choice)
	for i, e := range valid {
		use := "use"
		if i > 0 && cfg.Policy.CertChoice == config.CertChoiceNewest {
			use = "skip (not the newest)"
		}
		fmt.Fprintf(w, "  %s %s\n", use, describe(e.Cert))
		fmt.Fprintf(w, "      id %s, from %s %s\n", e.ID, e.Source, e.File)
	}
	for _, r := range rejected {
		fmt.Fprintf(w, "  refused %s\n      because %s (from %s)\n", describe(r.Cert), reason(r.Err), r.Source)
	}
	for _, st := range dir.CRLStatus() {
		line := fmt.Sprintf("crl %s: fetched %s, next update %s, %d revoked", st.URL,
			st.Fetched.UTC().Format(time.RFC3339), st.NextUpdate.UTC().Format(time.RFC3339), st.Revoked)
		if st.LastError != nil {
			line += fmt.Sprintf(" (last fetch failed: %v)", st.LastError)
		}
		fmt.Fprintln(w, line)
	}
	if len(valid) == 0 {
		fmt.Fprintf(w, "profile: none (policy.missing_cert = %q applies)\n", cfg.Policy.MissingCert)
		return 0, nil
	}
	profile, why := effectiveProfile(cfg, dir, addr, valid)
	fmt.Fprintf(w, "profile: %s (%s)\n", profile, why)
	return len(valid), nil
}

// errNoUsableCertificate makes `certs check` exit 1.
var errNoUsableCertificate = errors.New("no usable certificate")

func certsCheck(ctx context.Context, cfg *config.Config, dir *directory.Directory, addr string, w io.Writer) error {
	valid, rejected, err := dir.LookupContext(ctx, addr)
	if err != nil {
		return err
	}
	if len(valid) == 0 {
		reasons := make([]string, 0, len(rejected))
		for _, r := range rejected {
			reasons = append(reasons, reason(r.Err))
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "none found")
		}
		fmt.Fprintf(w, "%s: no usable certificate (%s)\n", addr, strings.Join(reasons, "; "))
		return fmt.Errorf("%w for %q", errNoUsableCertificate, addr)
	}
	profile, _ := effectiveProfile(cfg, dir, addr, valid)
	fmt.Fprintf(w, "%s: ok, %d certificate(s), newest %s, profile %s\n", addr, len(valid), valid[0].ID[:16], profile)
	return nil
}

func certsLearn(cfg *config.Config, dir *directory.Directory, path string, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("failed to open message: %w", err)
	}
	msg, err := directory.ReadMessage(f)
	f.Close()
	if err != nil {
		return err
	}
	l, err := dir.Learn(msg)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "learnt %s: %s\n", l.Address, describe(l.Cert))
	fmt.Fprintf(w, "  certificate %s\n  capabilities %s\n", l.CertFile, l.CapsFile)
	names := make([]string, 0, len(l.Capabilities))
	for _, c := range l.Capabilities {
		names = append(names, algorithmName(c.Algorithm))
	}
	if len(names) == 0 {
		names = append(names, "none announced")
	}
	fmt.Fprintf(w, "  announced: %s\n", strings.Join(names, ", "))
	fmt.Fprintln(w, "  a running daemon uses this after SIGHUP (or a restart)")
	if l.Unusable != nil {
		fmt.Fprintf(w, "  warning: the certificate is not usable for encryption: %s\n", reason(l.Unusable))
	}
	valid, _, err := dir.LookupContext(bgctx(), l.Address)
	if err == nil && len(valid) > 0 {
		profile, why := effectiveProfile(cfg, dir, l.Address, valid)
		fmt.Fprintf(w, "  profile for %s: %s (%s)\n", l.Address, profile, why)
	}
	return nil
}

// effectiveProfile is the profile the pipeline uses for a recipient, and why (directory decides).
func effectiveProfile(cfg *config.Config, dir *directory.Directory, addr string, valid []*directory.Entry) (string, string) {
	pinned := map[string]string{}
	for _, d := range cfg.Policy.Domains {
		if _, ok := pinned[d.Domain]; !ok && d.Profile != "" {
			pinned[d.Domain] = d.Profile
		}
	}
	return dir.EffectiveProfile(addr, valid, pinned, cfg.Policy.Profile)
}

func describe(c *x509.Certificate) string {
	if c == nil {
		return "(no certificate)"
	}
	return fmt.Sprintf("%q serial %#x, issuer %q, valid %s to %s", c.Subject.String(), c.SerialNumber,
		c.Issuer.String(), c.NotBefore.UTC().Format("2006-01-02"), c.NotAfter.UTC().Format("2006-01-02"))
}

// reason is a refusal without the certificate name the caller already printed.
func reason(err error) string {
	var ce *directory.CertError
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

func algorithmName(oid string) string {
	if n, ok := algorithmNames[oid]; ok {
		return n
	}
	return oid
}
