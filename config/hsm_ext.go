package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// HSMHealth is the part of [hsm] beyond the one token's module, label and
// PIN: how the daemon lives with tokens that come and go, and, with
// [[token]] entries, which of them makes content keys. It is embedded in
// [HSM], so its keys sit directly under [hsm].
type HSMHealth struct {
	// RequireUp makes the front end answer 451 4.3.0 at MAIL while the
	// token is unavailable. Off (the default), mail is accepted while the
	// spool has room and sealed once the token is back.
	RequireUp bool `toml:"require_up"`
	// ReconnectMax caps the wait between reconnection attempts after the
	// token was lost; 0 means DefaultReconnectMax.
	ReconnectMax time.Duration `toml:"reconnect_max"`
	// WaitForToken lets serve start while a token its configuration names
	// is not present, and wait for it; off, such a token stops the start.
	WaitForToken bool `toml:"wait_for_token"`
	// ContentToken names the [[token]] that makes content keys; it may be
	// left out when exactly one token has role "content".
	ContentToken string `toml:"content_token"`
	// ContentFallback names a second [[token]] with role "content" that
	// makes content keys while ContentToken is unavailable.
	ContentFallback string `toml:"content_fallback"`
}

// DefaultReconnectMax is the longest wait between reconnection attempts
// when hsm.reconnect_max is not set.
const DefaultReconnectMax = 30 * time.Second

// ReconnectWait is hsm.reconnect_max or its default.
func (h HSMHealth) ReconnectWait() time.Duration {
	if h.ReconnectMax == 0 {
		return DefaultReconnectMax
	}
	return h.ReconnectMax
}

// Token is one [[token]] entry: a PKCS#11 token the appliance logs in to,
// and what it is used for. A file with no [[token]] describes its one token
// in [hsm], which then has every role.
type Token struct {
	// Name is how the rest of the file, the logs and `keys -token` call it.
	Name string `toml:"name"`
	// Module is the PKCS#11 library that reaches the token.
	Module string `toml:"module"`
	// URI selects the token by RFC 7512 token attributes: token (label)
	// or serial, and optionally manufacturer and model, which must then
	// match too, e.g. "pkcs11:token=card;manufacturer=OpenSC%20Project".
	URI     string `toml:"uri"`
	PINFile string `toml:"pin_file"`
	PINEnv  string `toml:"pin_env"`
	// Roles: "sign" (senders' and lists' keys) and/or "content" (content
	// keys, encryption, key wrapping; a list's key also unwraps).
	Roles []string `toml:"roles"`
	// MaxSessions bounds the token's sessions; 0 means hsm.max_sessions.
	MaxSessions int `toml:"max_sessions"`
	// Standby names another [[token]] holding the same keys (same labels
	// and ids) and every role of this one: while this token is down, its
	// work goes there, and comes back when it is up again. Give the pair two
	// modules (see TokenWarnings).
	Standby string `toml:"standby"`
}

// Token roles as the file spells them.
const (
	RoleSign    = "sign"
	RoleContent = "content"
)

// HasRole reports whether the token has role r.
func (t Token) HasRole(r string) bool {
	for _, x := range t.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// Tokens are the tokens the appliance uses: the [[token]] entries, or the
// one [hsm] describes (named by its label, with every role).
func (c *Config) TokenList() []Token {
	if len(c.Tokens) > 0 {
		out := make([]Token, len(c.Tokens))
		for i, t := range c.Tokens {
			if t.MaxSessions == 0 {
				t.MaxSessions = c.HSM.MaxSessions
			}
			out[i] = t
		}
		return out
	}
	return []Token{{
		Name:        c.HSM.Token,
		Module:      c.HSM.Module,
		URI:         "pkcs11:token=" + url.PathEscape(c.HSM.Token),
		PINFile:     c.HSM.PINFile,
		PINEnv:      c.HSM.PINEnv,
		Roles:       []string{RoleSign, RoleContent},
		MaxSessions: c.HSM.MaxSessions,
	}}
}

// FindToken returns the token called name.
func (c *Config) FindToken(name string) (Token, bool) {
	for _, t := range c.TokenList() {
		if t.Name == name {
			return t, true
		}
	}
	return Token{}, false
}

// TokenPIN reads the PIN of the token called name the way [Config.PIN]
// reads [hsm]'s, with errors naming the token's keys.
func (c *Config) TokenPIN(name string) (string, error) {
	if len(c.Tokens) == 0 {
		return c.PIN()
	}
	for i, t := range c.Tokens {
		if t.Name != name {
			continue
		}
		one := Config{HSM: HSM{PINFile: t.PINFile, PINEnv: t.PINEnv}}
		pin, err := one.PIN()
		var ce *Error
		if errors.As(err, &ce) {
			e := *ce
			e.Key = fmt.Sprintf("token[%d].", i) + strings.TrimPrefix(e.Key, "hsm.")
			return "", &e
		}
		return pin, err
	}
	return "", &Error{Key: "token", Err: ErrMissing, Detail: fmt.Sprintf("no token named %q", name)}
}

// ContentTokens names the token that makes content keys and its fallback
// ("" when there is none).
func (c *Config) ContentTokens() (primary, fallback string) {
	if len(c.Tokens) == 0 {
		return c.HSM.Token, ""
	}
	if c.HSM.ContentToken != "" {
		return c.HSM.ContentToken, c.HSM.ContentFallback
	}
	if l := c.contentCandidates(); len(l) > 0 {
		return l[0], c.HSM.ContentFallback
	}
	return "", c.HSM.ContentFallback
}

// TokenWarnings are what serve accepts in the tokens but an operator should fix: a failover
// pair whose two tokens load one module. Tokens of one module share its initialisation, which
// the appliance redoes only when every token of the module has closed; so if the module does
// not take back by itself a token that went away (SoftHSM2 does not), the primary comes back
// only at a restart, while its standby does its work.
func (c *Config) TokenWarnings() []string {
	var out []string
	for i, t := range c.Tokens {
		if t.Standby == "" {
			continue
		}
		sb, ok := c.FindToken(t.Standby)
		if !ok || !sameFile(t.Module, sb.Module) {
			continue
		}
		out = append(out, fmt.Sprintf("token[%d].standby: tokens %q and %q load the same module %q: "+
			"if it does not take back a token that went away by itself (SoftHSM2 does not), %q comes "+
			"back only at a restart; give the pair two modules", i, t.Name, sb.Name, t.Module, t.Name))
	}
	return out
}

// sameFile says whether two paths name one file, symbolic links followed where they resolve.
func sameFile(a, b string) bool {
	if ra, err := filepath.EvalSymlinks(a); err == nil {
		a = ra
	}
	if rb, err := filepath.EvalSymlinks(b); err == nil {
		b = rb
	}
	return filepath.Clean(a) == filepath.Clean(b)
}

// contentCandidates are the tokens with role content that may make content
// keys without being named: those that are not another token's standby (a
// standby takes over through its primary), or, when every one is, all.
func (c *Config) contentCandidates() []string {
	standby := map[string]bool{}
	for _, t := range c.Tokens {
		standby[t.Standby] = true
	}
	var primary, all []string
	for _, t := range c.Tokens {
		if t.HasRole(RoleContent) {
			all = append(all, t.Name)
			if !standby[t.Name] {
				primary = append(primary, t.Name)
			}
		}
	}
	if len(primary) > 0 {
		return primary
	}
	return all
}

// tokenAttrs are the RFC 7512 attributes that describe a token rather than
// an object.
var tokenAttrs = []string{"token", "serial", "manufacturer", "model"}

// uriAttrs splits a PKCS#11 URI's path into decoded attributes.
func uriAttrs(s string) (map[string]string, error) {
	rest, ok := strings.CutPrefix(s, "pkcs11:")
	if !ok {
		return nil, errors.New("not a PKCS#11 URI (must start with \"pkcs11:\")")
	}
	path, query, _ := strings.Cut(rest, "?")
	if query != "" {
		return nil, fmt.Errorf("query attributes (%q) are not accepted here", query)
	}
	attrs := map[string]string{}
	for _, a := range strings.Split(path, ";") {
		if a == "" {
			continue
		}
		name, val, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("attribute %q is not name=value", a)
		}
		dec, err := url.PathUnescape(val)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		if _, dup := attrs[name]; dup {
			return nil, fmt.Errorf("attribute %q given twice", name)
		}
		attrs[name] = dec
	}
	return attrs, nil
}

// TokenFor names the token a sender's or list's key URI picks: the one
// token with the role whose uri has every token attribute the key URI gives
// (token, serial, manufacturer, model), with the same value. A key URI
// without token attributes picks the only token with that role.
func (c *Config) TokenFor(keyURI, role string) (string, error) {
	if len(c.Tokens) == 0 {
		return c.HSM.Token, nil
	}
	key, err := uriAttrs(keyURI)
	if err != nil {
		return "", err
	}
	standby := map[string]bool{}
	for _, t := range c.Tokens {
		standby[t.Standby] = true
	}
	var match []string
	for _, t := range c.Tokens {
		// A standby is reached through its primary, never picked by a key.
		if !t.HasRole(role) || standby[t.Name] {
			continue
		}
		sel, err := uriAttrs(t.URI)
		if err != nil {
			continue // reported against the token's uri
		}
		ok := true
		for _, a := range tokenAttrs {
			if v, given := key[a]; given && sel[a] != v {
				ok = false
			}
		}
		if ok {
			match = append(match, t.Name)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return "", fmt.Errorf("no [[token]] with role %q matches its token attributes", role)
	}
	return "", fmt.Errorf("%d tokens with role %q match (%s); add token= or serial= to pick one", len(match), role, strings.Join(match, ", "))
}

var tokenName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

func (c *Config) validateHSMHealth(v *validator) {
	// Below 100ms the loop would spin against a token that is not coming
	// back; above 10m an operator's fix would go unnoticed for too long.
	durationRange(v, "hsm.reconnect_max", c.HSM.ReconnectMax, 100*time.Millisecond, 10*time.Minute)
	if len(c.Tokens) == 0 {
		if c.HSM.ContentToken != "" {
			v.add("hsm.content_token", ErrConflict, "names a [[token]], and there is none")
		}
		if c.HSM.ContentFallback != "" {
			v.add("hsm.content_fallback", ErrConflict, "names a [[token]], and there is none")
		}
	}
}

// validateTokens checks [[token]] entries and how keys and content keys
// pick them; with [[token]], [hsm] keeps only daemon-wide settings.
func (c *Config) validateTokens(v *validator) {
	for _, k := range []struct{ key, val string }{
		{"hsm.module", c.HSM.Module}, {"hsm.token", c.HSM.Token},
		{"hsm.pin_file", c.HSM.PINFile}, {"hsm.pin_env", c.HSM.PINEnv},
	} {
		if k.val != "" {
			v.add(k.key, ErrConflict, "with [[token]] entries, each token gives its own module, uri and PIN")
		}
	}
	intRange(v, "hsm.max_sessions", int64(c.HSM.MaxSessions), 2, 1024)
	names := map[string]int{}
	for i, t := range c.Tokens {
		k := fmt.Sprintf("token[%d]", i)
		switch {
		case t.Name == "":
			v.add(k+".name", ErrMissing, "what keys -token and the logs call the token")
		case !tokenName.MatchString(t.Name):
			v.add(k+".name", ErrInvalid, "%q: use letters, digits, '.', '_' and '-'", t.Name)
		default:
			if j, dup := names[t.Name]; dup {
				v.add(k+".name", ErrDuplicate, "%q is already token[%d]", t.Name, j)
			}
			names[t.Name] = i
		}
		required(v, k+".module", t.Module)
		if t.URI == "" {
			v.add(k+".uri", ErrMissing, "the token's PKCS#11 URI, like \"pkcs11:token=appliance\"")
		} else if attrs, err := uriAttrs(t.URI); err != nil {
			v.add(k+".uri", ErrInvalid, "%q: %v", t.URI, err)
		} else {
			for a := range attrs {
				if !contains(tokenAttrs, a) {
					v.add(k+".uri", ErrInvalid, "%q: attribute %q does not select a token (use token, serial, manufacturer, model)", t.URI, a)
				}
			}
			if attrs["token"] == "" && attrs["serial"] == "" {
				v.add(k+".uri", ErrInvalid, "%q: needs token= or serial= to find the token", t.URI)
			}
		}
		switch {
		case t.PINFile == "" && t.PINEnv == "":
			v.add(k+".pin_file", ErrMissing, "set pin_file or pin_env")
		case t.PINFile != "" && t.PINEnv != "":
			v.add(k+".pin_env", ErrConflict, "set pin_file or pin_env, not both")
		}
		if len(t.Roles) == 0 {
			v.add(k+".roles", ErrMissing, "give [\"sign\"], [\"content\"] or both")
		}
		seen := map[string]bool{}
		for _, r := range t.Roles {
			if r != RoleSign && r != RoleContent {
				v.add(k+".roles", ErrInvalid, "%q is not %q or %q", r, RoleSign, RoleContent)
			} else if seen[r] {
				v.add(k+".roles", ErrDuplicate, "%q given twice", r)
			}
			seen[r] = true
		}
		if t.MaxSessions != 0 {
			intRange(v, k+".max_sessions", int64(t.MaxSessions), 2, 1024)
		}
		if t.Standby != "" {
			sb, ok := c.FindToken(t.Standby)
			switch {
			case !ok:
				v.add(k+".standby", ErrInvalid, "%q is not a [[token]] name", t.Standby)
			case t.Standby == t.Name:
				v.add(k+".standby", ErrInvalid, "a token cannot stand by for itself")
			case sb.Standby != "":
				v.add(k+".standby", ErrInvalid, "token %q has a standby of its own; one standby per primary, no chains", t.Standby)
			default:
				for _, r := range t.Roles {
					if !sb.HasRole(r) {
						v.add(k+".standby", ErrInvalid, "token %q lacks role %q of token %q", t.Standby, r, t.Name)
					}
				}
			}
		}
	}
	c.validateContentTokens(v)
	for i, s := range c.Senders {
		if s.Key == "" {
			continue // reported by validateSenders
		}
		if _, err := c.TokenFor(s.Key, RoleSign); err != nil {
			v.add(fmt.Sprintf("sender[%d].key", i), ErrInvalid, "%q: %v", s.Key, err)
		}
	}
	for i, l := range c.Lists {
		if l.Key == "" {
			continue
		}
		// A list's key unwraps the content key of each post and the key is then
		// wrapped for every member, on the same token: it needs both roles.
		name, err := c.TokenFor(l.Key, RoleSign)
		if err == nil {
			if t, _ := c.FindToken(name); !t.HasRole(RoleContent) {
				err = fmt.Errorf("token %q needs role %q too: a list's key unwraps each post's content key", name, RoleContent)
			}
		}
		if err != nil {
			v.add(fmt.Sprintf("list[%d].key", i), ErrInvalid, "%q: %v", l.Key, err)
		}
	}
}

func (c *Config) validateContentTokens(v *validator) {
	content := c.contentCandidates()
	isContent := func(key, name string) {
		if t, ok := c.FindToken(name); !ok {
			v.add(key, ErrInvalid, "%q is not a [[token]] name", name)
		} else if !t.HasRole(RoleContent) {
			v.add(key, ErrInvalid, "token %q does not have role %q", name, RoleContent)
		}
	}
	switch {
	case len(content) == 0:
		v.add("token", ErrMissing, "no [[token]] has role %q: something must make content keys", RoleContent)
	case c.HSM.ContentToken != "":
		isContent("hsm.content_token", c.HSM.ContentToken)
	case len(content) > 1:
		v.add("hsm.content_token", ErrMissing, "tokens %s have role %q: name the one that makes content keys", quoteList(content), RoleContent)
	}
	if f := c.HSM.ContentFallback; f != "" {
		isContent("hsm.content_fallback", f)
		if primary, _ := c.ContentTokens(); f == primary {
			v.add("hsm.content_fallback", ErrConflict, "%q is also the content token", f)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resolveTokens makes [[token]] paths absolute like [hsm]'s.
func (c *Config) resolveTokens(abs func(*string)) {
	for i := range c.Tokens {
		if strings.ContainsRune(c.Tokens[i].Module, filepath.Separator) {
			abs(&c.Tokens[i].Module)
		}
		abs(&c.Tokens[i].PINFile)
	}
}

// checkTokenFiles is CheckFiles for [[token]] entries.
func (c *Config) checkTokenFiles() []error {
	var errs []error
	for i, t := range c.Tokens {
		if strings.ContainsRune(t.Module, os.PathSeparator) {
			if st, err := os.Stat(t.Module); err != nil {
				errs = append(errs, &Error{Key: fmt.Sprintf("token[%d].module", i), Err: ErrFile, Detail: err.Error()})
			} else if st.IsDir() {
				errs = append(errs, &Error{Key: fmt.Sprintf("token[%d].module", i), Err: ErrFile, Detail: fmt.Sprintf("%q is a directory", t.Module)})
			}
		}
		if _, err := c.TokenPIN(t.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// QueueWorkers is queue.workers, or when it is left out twice the sessions of the token that
// makes content keys, between 4 and 64 (see [Queue.Workers]).
func (c *Config) QueueWorkers() int {
	if c.Queue.Workers > 0 {
		return c.Queue.Workers
	}
	sessions := c.HSM.MaxSessions
	primary, _ := c.ContentTokens()
	if t, ok := c.FindToken(primary); ok && t.MaxSessions > 0 {
		sessions = t.MaxSessions
	}
	return min(max(2*sessions, 4), 64)
}
