package split

import (
	"fmt"
	"strings"
)

// Header protection (RFC 9788). The signed and encrypted entity carries a
// copy of the message's header fields, and the header outside is the
// obscured one. The body is signed once and encrypted once per profile for
// every package of a message, so whatever header goes inside is shared by
// every package: it must be what every recipient of every package may see.
//
// The protected header is therefore the header of a package with no
// recipient of its own: every field kept only when it names no one outside
// To, Cc and the originators, address fields rebuilt when a display name or
// comment would reveal someone, and no Bcc or Resent-Bcc field at all (the
// first of RFC 5322 section 3.6.3's three ways). Trace and content fields
// are not part of it: Received stays outside, and the Content-* fields are
// the entity's own.

// HeaderProtection says which recipients get header-protected messages: On
// for every domain, except where Domains says otherwise for a lower-case
// recipient domain.
type HeaderProtection struct {
	On      bool
	Domains map[string]bool
}

// For reports whether header protection is on for the normalized address n.
func (h HeaderProtection) For(n string) bool {
	if v, ok := h.Domains[strings.ToLower(n[strings.LastIndexByte(n, '@')+1:])]; ok {
		return v
	}
	return h.On
}

// Protection is a plan's header protection: set when every recipient that
// gets a package has it on, nil otherwise (the message is sealed as it
// would be without it).
type Protection struct {
	// Header are the edits that make the protected header from the
	// submitted one: the same for every package, naming no hidden
	// recipient, with no Bcc field.
	Header HeaderEdits
}

// protection is the plan's header protection for the recipients that get a
// package.
func (hp *headerPlan) protection(pol Policy, rcpts []*recipient) *Protection {
	some := false
	for _, r := range rcpts {
		if len(r.certs) == 0 && pol.MissingCert != Plaintext {
			continue // refused: gets no package
		}
		if !pol.HeaderProtection.For(r.norm) {
			return nil
		}
		some = true
	}
	if !some {
		return nil
	}
	all := hp.edits(nil, false, nil)
	var e HeaderEdits
	for _, f := range all.Fields {
		switch classOf(f.Key) {
		case classTrace, classContent, classHidden:
			continue
		}
		e.Fields = append(e.Fields, f)
	}
	e.Dropped = all.Dropped
	return &Protection{Header: e}
}

// checkProtected is the oracle's reading of a plan's protected header: it
// is shared by every package, so everything it names must be visible to
// every recipient (base), and it carries no Bcc field and nothing that is
// never carried.
func checkProtected(in Input, p *Plan, base map[string]bool, secret map[string]string) error {
	if p.Protection == nil {
		return nil
	}
	e := p.Protection.Header
	if len(e.Bcc) > 0 {
		return fmt.Errorf("%w: protected header keeps a Bcc field", ErrPrivacy)
	}
	for _, f := range oracleApply(in.Header, e) {
		if f[0] == "Bcc" || f[0] == "Resent-Bcc" || f[0] == "Received" || strings.HasPrefix(f[0], "Content-") {
			return fmt.Errorf("%w: protected header carries %s", ErrPrivacy, f[0])
		}
	}
	revealed := map[string]string{}
	if err := oracleHeaderReveals(in, e, false, in.Policy.CaseSensitiveLocalPart, secret, revealed, map[string][]string{}); err != nil {
		return fmt.Errorf("%w: protected header: %v", ErrPrivacy, err)
	}
	for a, how := range revealed {
		if !base[a] {
			return fmt.Errorf("%w: protected header reveals %q (%s)", ErrPrivacy, a, how)
		}
	}
	return nil
}
