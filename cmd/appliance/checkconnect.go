package main

// check-config -connect: everything serve would meet at start and at the first message, each
// reported on a line of its own with ok, warn or FAIL and the reason, so that an operator sees
// all of it in one run: the module and token, the login, each sender's and list's key and
// certificate (expiry, key match, address, chain), the certificate directory, the TLS
// certificate, the next hop's greeting and STARTTLS, and the LDAP bind.

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"appliance/config"
	"appliance/daemon"
	"appliance/delivery"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/tty"
)

// connectTimeout bounds each network check.
const connectTimeout = 10 * time.Second

// checkConnect runs every check and returns an error when any failed.
func checkConnect(cfg *config.Config, w io.Writer) error {
	r, now := &tty.Checklist{W: w}, time.Now()
	ctx := context.Background()

	// Every module is described before any token is opened: describing one initialises and
	// finalises the module, which must not happen under an open token of the same module.
	toks := map[string]*hsm.Token{}
	described := map[string]bool{}
	for _, t := range cfg.TokenList() {
		what := "token " + t.Name
		lib, tok, err := hsm.DescribeToken(t.Module, t.URI)
		if err != nil {
			r.Fail(what, err)
			continue
		}
		described[t.Name] = true
		r.OK(what+" module", lib)
		if tok != "" {
			r.OK(what, tok)
		}
	}
	for _, t := range cfg.TokenList() {
		if !described[t.Name] {
			continue
		}
		tok, err := openToken(cfg, t, false)
		if err != nil {
			r.Fail("token "+t.Name+" login", err)
			continue
		}
		defer tok.Close()
		toks[t.Name] = tok
		r.OK("token "+t.Name+" login", "logged in as user; roles "+strings.Join(t.Roles, ", "))
	}
	tokenOf := func(keyURI string) *hsm.Token {
		name, err := cfg.TokenFor(keyURI, config.RoleSign)
		if err != nil {
			return nil
		}
		return toks[name]
	}

	roots, inters, err := directory.LoadRoots(cfg.Directory.Roots)
	if err != nil {
		r.Fail("directory.roots", err)
	}
	for _, s := range cfg.Senders {
		keyAndCert(ctx, r, now, tokenOf(s.Key), "sender "+s.Address, s.Address, s.Key, s.Cert, roots, inters)
	}
	for _, l := range cfg.Lists {
		keyAndCert(ctx, r, now, tokenOf(l.Key), "list "+l.Address, l.Address, l.Key, l.Cert, roots, inters)
	}

	if d, err := daemon.OpenDirectory(cfg); err != nil {
		r.Fail("directory", err)
	} else {
		problems := d.Problems()
		r.OK("directory", fmt.Sprintf("%s loaded, sources %s, %d problem(s)", cfg.Directory.Certs,
			strings.Join(cfg.Directory.SourceOrder(), ", "), len(problems)))
		for _, p := range problems {
			r.Warn("directory", p.Error())
		}
	}
	if cfg.SMTP.TLSCert != "" {
		if certs, err := directory.LoadCertificates(cfg.SMTP.TLSCert); err != nil || len(certs) == 0 {
			r.Fail("smtp.tls_cert", fmt.Errorf("no certificate: %v", err))
		} else {
			directory.CheckExpiry(r, "smtp.tls_cert", certs[0], now)
		}
	}
	delivery.CheckNextHop(r, cfg.Relay.NextHop, cfg.SMTP.Hostname, connectTimeout)
	if cfg.Directory.LDAP.Enabled() {
		ldapBind(r, cfg)
	}
	if r.Failed > 0 {
		return fmt.Errorf("%d check(s) failed", r.Failed)
	}
	return nil
}

// keyAndCert checks a key on the token and its certificate: present, in date, for the same key,
// naming the address, issued under the configured roots.
func keyAndCert(ctx context.Context, r *tty.Checklist, now time.Time, tok *hsm.Token, what, addr, keyURI, certPath string, roots, inters *x509.CertPool) {
	var pub crypto.PublicKey
	if tok != nil {
		if s, err := tok.Signer(ctx, keyURI); err != nil {
			r.Fail(what+" key", fmt.Errorf("%s: %w", keyURI, err))
		} else {
			pub = s.Public()
			r.OK(what+" key", keyURI)
		}
	}
	directory.CheckSignerCert(r, what, addr, keyURI, pub, certPath, roots, inters, now)
}

// ldapBind connects and binds as directory.ldap says.
func ldapBind(r *tty.Checklist, cfg *config.Config) {
	what := "ldap " + cfg.Directory.LDAP.URL
	o, err := daemon.DirectoryOptions(cfg)
	if err != nil || o.LDAP == nil {
		r.Fail(what, fmt.Errorf("options: %v", err))
		return
	}
	if who, err := directory.CheckLDAPBind(o.LDAP, connectTimeout); err != nil {
		r.Fail(what, err)
	} else {
		r.OK(what, "bound "+who)
	}
}
