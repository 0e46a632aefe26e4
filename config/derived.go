package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Values computed from the configuration, so that cmd/appliance copies them into each
// package's options instead of computing them.

// BindPassword is the LDAP bind password from bind_password_file ("" without one). One
// trailing newline is what editors and echo add; it is never part of the password.
func (l LDAP) BindPassword() (string, error) {
	if l.BindPasswordFile == "" {
		return "", nil
	}
	pw, err := os.ReadFile(l.BindPasswordFile)
	if err != nil {
		return "", fmt.Errorf("failed to read directory.ldap.bind_password_file: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(string(pw), "\n"), "\r"), nil
}

// TLSConfig verifies the LDAP server against ca_file; nil (the system roots) without one.
func (l LDAP) TLSConfig() (*tls.Config, error) {
	if l.CAFile == "" {
		return nil, nil
	}
	pemData, err := os.ReadFile(l.CAFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read directory.ldap.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("failed to read directory.ldap.ca_file %q: no PEM certificate", l.CAFile)
	}
	return &tls.Config{RootCAs: pool}, nil
}

// KeysByToken are the senders' and lists' key URIs by the name of the token that signs with
// them; a key no token signs with is left out (validation reports it).
func (c *Config) KeysByToken() map[string][]string {
	keys := map[string][]string{}
	add := func(uri string) {
		if name, err := c.TokenFor(uri, RoleSign); err == nil {
			keys[name] = append(keys[name], uri)
		}
	}
	for _, s := range c.Senders {
		add(s.Key)
	}
	for _, l := range c.Lists {
		add(l.Key)
	}
	return keys
}

// PinnedProfiles are the content profiles [[policy.domain]] entries pin, by domain as written;
// the first entry for a domain wins.
func (p Policy) PinnedProfiles() map[string]string {
	pinned := map[string]string{}
	for _, d := range p.Domains {
		if _, ok := pinned[d.Domain]; !ok && d.Profile != "" {
			pinned[d.Domain] = d.Profile
		}
	}
	return pinned
}

// ErrEmptyBindPassword: a bind DN with an empty password is an "unauthenticated bind" (RFC 4513
// section 5.1.2), which some servers accept as anonymous; the LDAP client refuses it at the
// first lookup, so check-config refuses it at once.
var ErrEmptyBindPassword = errors.New("empty bind password")

// CheckFiles reads what the LDAP client reads at start (the bind password, ca_file), so that
// check-config fails where serve would. The warning, when not empty, names a password file that
// others may read.
func (l LDAP) CheckFiles() (warning string, err error) {
	if !l.Enabled() {
		return "", nil
	}
	pw, err := l.BindPassword()
	if err == nil {
		_, err = l.TLSConfig()
	}
	switch {
	case err != nil:
		return "", fmt.Errorf("config: %w", err)
	case l.BindDN == "":
		return "", nil
	case pw == "":
		return "", fmt.Errorf("config: directory.ldap.bind_password_file %q: %w", l.BindPasswordFile, ErrEmptyBindPassword)
	}
	if st, err := os.Stat(l.BindPasswordFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		return fmt.Sprintf("directory.ldap.bind_password_file %q has mode %04o; want 0600 or stricter",
			l.BindPasswordFile, st.Mode().Perm()), nil
	}
	return "", nil
}
