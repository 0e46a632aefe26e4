package config

import (
	"fmt"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

func (c *Config) validate(v *validator) {
	c.validateHSM(v)
	c.validateHSMHealth(v)
	c.validateSMTP(v)
	c.validateRelay(v)
	c.validateQueue(v)
	required(v, "spool.dir", c.Spool.Dir)
	required(v, "directory.certs", c.Directory.Certs)
	required(v, "directory.roots", c.Directory.Roots)
	c.validateDirectoryExt(v)
	c.validatePolicy(v)
	oneOf(v, "log.format", c.Log.Format, LogText, LogJSON)
	oneOf(v, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	c.validateMetrics(v)
	c.validateSenders(v)
	c.validateLists(v)
	c.validateCompliance(v)
}

func (c *Config) validateHSM(v *validator) {
	if len(c.Tokens) > 0 {
		c.validateTokens(v)
		return
	}
	required(v, "hsm.module", c.HSM.Module)
	required(v, "hsm.token", c.HSM.Token)
	switch {
	case c.HSM.PINFile == "" && c.HSM.PINEnv == "":
		v.add("hsm.pin_file", ErrMissing, "set pin_file or pin_env")
	case c.HSM.PINFile != "" && c.HSM.PINEnv != "":
		v.add("hsm.pin_env", ErrConflict, "set pin_file or pin_env, not both")
	}
	// crypto11 keeps one session for itself: fewer than 2 leaves none to
	// sign with.
	intRange(v, "hsm.max_sessions", int64(c.HSM.MaxSessions), 2, 1024)
}

func (c *Config) validateSMTP(v *validator) {
	if err := checkHostPort(c.SMTP.Listen, true); err != nil {
		v.add("smtp.listen", ErrInvalid, "%q: %v", c.SMTP.Listen, err)
	}
	if c.SMTP.Hostname == "" {
		v.add("smtp.hostname", ErrMissing, "the name given in the greeting and in Received")
	} else if !validHostname(c.SMTP.Hostname) {
		v.add("smtp.hostname", ErrInvalid, "%q is not a host name", c.SMTP.Hostname)
	}
	intRange(v, "smtp.max_message_bytes", c.SMTP.MaxMessageBytes, 1024, 1<<32)
	intRange(v, "smtp.max_recipients", int64(c.SMTP.MaxRecipients), 1, 100000)
	if (c.SMTP.TLSCert == "") != (c.SMTP.TLSKey == "") {
		v.add("smtp.tls_key", ErrConflict, "tls_cert and tls_key go together")
	}
	if c.SMTP.RequireAuth && c.SMTP.UsersFile == "" {
		v.add("smtp.users_file", ErrMissing, "require_auth needs a users_file")
	}
	c.validateSMTPSecurity(v)
}

func (c *Config) validateRelay(v *validator) {
	switch {
	case c.Relay.NextHop == "":
		v.add("relay.next_hop", ErrMissing, "the smarthost as host:port")
	case strings.EqualFold(c.Relay.NextHop, "mx"):
		v.add("relay.next_hop", ErrInvalid, "MX lookup is not supported yet; give host:port")
	default:
		if err := checkHostPort(c.Relay.NextHop, false); err != nil {
			v.add("relay.next_hop", ErrInvalid, "%q: %v", c.Relay.NextHop, err)
		}
	}
}

func (c *Config) validateQueue(v *validator) {
	if c.Queue.Workers != 0 {
		intRange(v, "queue.workers", int64(c.Queue.Workers), 1, 1024)
	}
	intRange(v, "queue.memory_bytes", c.Queue.MemoryBytes, 0, 1<<40)
	if len(c.Queue.Retry) == 0 {
		v.add("queue.retry", ErrMissing, "at least one retry interval")
	}
	for i, d := range c.Queue.Retry {
		if d < time.Second {
			v.add("queue.retry", ErrInvalid, "entry %d (%v) is shorter than 1s", i+1, d)
		}
	}
	if c.Queue.MaxAge < time.Minute {
		v.add("queue.max_age", ErrInvalid, "%v is shorter than 1m", c.Queue.MaxAge)
	}
}

// durationsAreStrings refuses integer durations: toml would read them as
// nanoseconds, which is never what "retry = [60]" means.
func (v *validator) durationsAreStrings(raw map[string]any) {
	q, _ := raw["queue"].(map[string]any)
	if q == nil {
		return
	}
	if _, ok := q["max_age"].(int64); ok {
		v.add("queue.max_age", ErrInvalid, `durations are strings, e.g. "120h"`)
	}
	if list, ok := q["retry"].([]any); ok {
		for _, e := range list {
			if _, ok := e.(int64); ok {
				v.add("queue.retry", ErrInvalid, `durations are strings, e.g. "5m"`)
				break
			}
		}
	}
}

func (c *Config) validatePolicy(v *validator) {
	p := &c.Policy
	oneOf(v, "policy.bcc", p.Bcc, BccIndividual, BccGroup)
	oneOf(v, "policy.missing_cert", p.MissingCert, MissingCertReject, MissingCertPlaintext, MissingCertDrop)
	oneOf(v, "policy.profile", p.Profile, ProfileCompat, ProfileModern)
	oneOf(v, "policy.rid", p.RID, RIDIssuerSerial, RIDSKI)
	oneOf(v, "policy.cert_choice", p.CertChoice, CertChoiceAll, CertChoiceNewest)
	oneOf(v, "policy.bcc_header", p.BccHeader, BccHeaderStrip, BccHeaderOwn)
	oneOf(v, "policy.unknown_recipientinfo", p.UnknownRecipientInfo, UnknownRIDrop, UnknownRIReject)
	oneOf(v, "policy.passthrough_missing", p.PassThroughMissing, PassThroughMissingDeliver, PassThroughMissingRefuse)
	oneOf(v, "policy.signed_over_encrypted", p.SignedOverEncrypted, SignedOverEncryptedRefuse, SignedOverEncryptedResign)
	seen := map[string]int{}
	for i := range p.Domains {
		d := &p.Domains[i]
		k := fmt.Sprintf("policy.domain[%d]", i)
		d.Domain = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d.Domain), "."))
		switch {
		case d.Domain == "":
			v.add(k+".domain", ErrMissing, "each [[policy.domain]] names its domain")
		case !validHostname(d.Domain):
			v.add(k+".domain", ErrInvalid, "%q is not a domain name", d.Domain)
		default:
			if j, dup := seen[d.Domain]; dup {
				v.add(k+".domain", ErrDuplicate, "%q is already configured in policy.domain[%d]", d.Domain, j)
			}
			seen[d.Domain] = i
		}
		optional(v, k+".profile", d.Profile, ProfileCompat, ProfileModern)
		optional(v, k+".rid", d.RID, RIDIssuerSerial, RIDSKI)
		optional(v, k+".header_protection", d.HeaderProtection, HeaderProtectionOn, HeaderProtectionOff)
	}
}

func (c *Config) validateSenders(v *validator) {
	if len(c.Senders) == 0 {
		// Without senders every MAIL FROM is refused: a config that can
		// only say no is a mistake, not a setting.
		v.add("sender", ErrMissing, "at least one [[sender]] with address, key and cert")
	}
	seen := map[string]int{}
	for i := range c.Senders {
		s := &c.Senders[i]
		k := fmt.Sprintf("sender[%d]", i)
		if s.Address == "" {
			v.add(k+".address", ErrMissing, "the address this key signs for")
		} else if canon, err := canonicalAddress(s.Address); err != nil {
			v.add(k+".address", ErrInvalid, "%q: %v", s.Address, err)
		} else {
			s.Address = canon
			f := foldAddress(canon)
			if j, dup := seen[f]; dup {
				v.add(k+".address", ErrDuplicate, "%q is already configured in sender[%d]", canon, j)
			}
			seen[f] = i
		}
		if s.Key == "" {
			v.add(k+".key", ErrMissing, "a PKCS#11 URI like \"pkcs11:token=appliance;object=alice\"")
		} else if err := c.checkKeyURI(s.Key); err != nil {
			v.add(k+".key", ErrInvalid, "%q: %v", s.Key, err)
		}
		if s.Cert == "" {
			v.add(k+".cert", ErrMissing, "the sender's certificate chain, leaf first")
		}
	}
}

// checkKeyURI does the RFC 7512 checks that catch configuration mistakes:
// the scheme, an object or id to find the key by, and no other token than
// the one the appliance logs in to. The hsm package parses it for real.
func (c *Config) checkKeyURI(s string) error {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return fmt.Errorf("not a PKCS#11 URI (must start with \"pkcs11:\")")
	}
	path, _, _ := strings.Cut(rest, "?")
	attrs := map[string]string{}
	for _, a := range strings.Split(path, ";") {
		if a == "" {
			continue
		}
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return fmt.Errorf("attribute %q is not name=value", a)
		}
		dec, err := url.PathUnescape(val)
		if err != nil {
			return fmt.Errorf("attribute %q: %w", name, err)
		}
		if _, dup := attrs[name]; dup {
			return fmt.Errorf("attribute %q given twice", name)
		}
		attrs[name] = dec
	}
	if attrs["object"] == "" && attrs["id"] == "" {
		return fmt.Errorf("names no key (needs object= or id=)")
	}
	if t, ok := attrs["token"]; ok && c.HSM.Token != "" && t != c.HSM.Token {
		return fmt.Errorf("token %q is not hsm.token %q", t, c.HSM.Token)
	}
	return nil
}

// canonicalAddress accepts a bare addr-spec and lower-cases its domain.
func canonicalAddress(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return "", fmt.Errorf("not an email address: %w", err)
	}
	if a.Name != "" || strings.ContainsAny(s, "<>") {
		return "", fmt.Errorf("give the bare address, without a display name or brackets")
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return "", fmt.Errorf("no domain")
	}
	return a.Address[:at] + "@" + strings.ToLower(a.Address[at+1:]), nil
}

func foldAddress(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func required(v *validator, key, val string) {
	if strings.TrimSpace(val) == "" {
		v.add(key, ErrMissing, "required")
	}
}

func oneOf(v *validator, key, val string, allowed ...string) {
	for _, a := range allowed {
		if val == a {
			return
		}
	}
	v.add(key, ErrInvalid, "%q is not one of %s", val, quoteList(allowed))
}

func optional(v *validator, key, val string, allowed ...string) {
	if val != "" {
		oneOf(v, key, val, allowed...)
	}
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

func intRange(v *validator, key string, n, lo, hi int64) {
	if n < lo || n > hi {
		v.add(key, ErrInvalid, "%d is outside %d..%d", n, lo, hi)
	}
}

// checkHostPort parses host:port; the listener may leave the host empty
// (all interfaces) and use port 0 (any free port, for tests).
func checkHostPort(s string, listen bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (!listen && p == 0) {
		return fmt.Errorf("bad port %q", port)
	}
	if host == "" {
		if listen {
			return nil
		}
		return fmt.Errorf("no host")
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return fmt.Errorf("bad host %q", host)
	}
	return nil
}

func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
