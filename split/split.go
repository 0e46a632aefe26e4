package split

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"
)

// BccMode says how hidden recipients are packaged.
type BccMode int

const (
	// Individual gives every hidden recipient a package of its own.
	Individual BccMode = iota
	// Group gives all hidden recipients one package per profile.
	Group
)

// MissingCert says what happens to a recipient without a usable certificate.
type MissingCert int

const (
	// Reject refuses the recipient with 550 5.7.1.
	Reject MissingCert = iota
	// Plaintext gives the recipient a signed-only package of its own.
	Plaintext
	// Drop does not deliver to the recipient and reports it in a DSN.
	Drop
)

// CertChoice says which of a recipient's valid certificates get a RecipientInfo.
type CertChoice int

const (
	// All valid certificates.
	All CertChoice = iota
	// Newest only: the latest NotBefore (ties go to the smallest ID).
	Newest
)

// ProfileCompat is the content profile every S/MIME client reads; it is the
// default and wins when one recipient's certificates span several profiles.
const ProfileCompat = "compat"

// Cert is one encryption certificate as the directory sees it.
type Cert struct {
	ID        string    // unique key the caller maps back to the certificate, e.g. SHA-256 hex
	Owner     string    // the address it belongs to
	Profile   string    // content profile learnt for it; "" = from the policy
	NotBefore time.Time // for Newest
	// KeyAgree marks an EC certificate, whose RecipientInfo is a KeyAgreeRecipientInfo
	// (ECDH). NSS 3.87 cannot read an envelope holding any, and gpgsm 2.2 reads none, so a
	// recipient with one gets a package of its own, and a sender's is in the self-copy of those
	// packages only, unless the sender has no other kind (README, EC recipients).
	KeyAgree bool
}

// Policy is the part of the configuration that shapes a plan.
type Policy struct {
	Bcc         BccMode
	MissingCert MissingCert
	CertChoice  CertChoice
	// SelfCopy adds the sender's certificates to every encrypted package.
	SelfCopy bool
	// KeepBcc keeps a Bcc field on hidden packages: naming only the
	// recipient (Individual, and every signed-only package) or all Bcc
	// recipients (Group). Off, hidden packages carry no Bcc field.
	KeepBcc bool
	// CaseSensitiveLocalPart compares local parts byte for byte.
	CaseSensitiveLocalPart bool
	// Profile is the default content profile ("" = ProfileCompat);
	// DomainProfiles overrides it per lower-case recipient domain. Both
	// apply only to certificates whose Profile is empty.
	Profile        string
	DomainProfiles map[string]string
	// HeaderProtection says who gets RFC 9788 header protection (protect.go).
	HeaderProtection HeaderProtection
}

// Input is everything Make looks at.
type Input struct {
	Header   textproto.Header
	MailFrom string
	RcptTo   []string
	// Certs is the directory's answer per envelope recipient, keyed by
	// address (normalized by Make); absent or empty means no valid
	// certificate. Every certificate's Owner must be its key.
	Certs map[string][]Cert
	// SenderCerts are the sender's own certificates for SelfCopy; their
	// Owner must be in From, Sender or MAIL FROM.
	SenderCerts []Cert
	Policy      Policy
}

// Package is one outgoing SMTP transaction.
type Package struct {
	// Recipients are RCPT TO paths, as given in Input.RcptTo.
	Recipients []string
	// Certs are exactly the certificates that get a RecipientInfo,
	// recipients' first, then the self-copy; empty for a signed-only package.
	Certs []Cert
	// Profile is the content profile; "" for a signed-only package.
	Profile string
	// Hidden marks a package of hidden recipients.
	Hidden bool
	Edits  HeaderEdits
	// ReceivedFor is the only address a Received field added for this
	// package may name in a "for" clause; "" (more than one recipient)
	// means add no "for" clause.
	ReceivedFor string
}

// Refusal is an envelope recipient that gets no package.
type Refusal struct {
	Recipient string // as given in Input.RcptTo
	Reason    string // names no one but Recipient
	Code      int    // SMTP reply code, 550
	Enhanced  string // RFC 3463 status, "5.7.1"
	DSN       bool   // the sender is told by a DSN (Drop) rather than at RCPT time
}

// Plan is the outcome of Make.
type Plan struct {
	Packages []Package
	Refused  []Refusal
	// Profiles lists each content profile in use once, sorted: seal
	// encrypts the content once per entry and shares it between packages.
	Profiles []string
	// Inner are the edits for any header copied into the signed content,
	// which every package shares: it must name no hidden recipient.
	Inner HeaderEdits
	// Protection is the message's header protection, nil when off (protect.go).
	Protection *Protection
}

var (
	// ErrNoRecipients is returned for an empty envelope.
	ErrNoRecipients = errors.New("no envelope recipients")
	// ErrInvalidPolicy is returned for an out-of-range Policy value.
	ErrInvalidPolicy = errors.New("invalid policy")
	// ErrInvalidCert is returned for a certificate with no ID, or whose
	// Owner does not match the address it was listed for.
	ErrInvalidCert = errors.New("invalid certificate")
)

// recipient is one distinct envelope recipient.
type recipient struct {
	path    string // first RCPT TO form
	spec    string // its bare addr-spec, for fields we write
	norm    string
	hidden  bool
	certs   []Cert // chosen ones
	own     bool   // a chosen certificate is KeyAgree: the recipient gets a package of its own
	profile string // "" when certs is empty
	listed  string // its spec in a Bcc field, "" if not listed there
}

// Make plans the packages for one message. It fails, rather than guess, on an
// unparsable address field or envelope path, an invalid policy or a
// certificate that does not belong to the address it was listed for.
func Make(in Input) (*Plan, error) {
	pol := in.Policy
	if err := pol.validate(); err != nil {
		return nil, err
	}
	cs := pol.CaseSensitiveLocalPart
	if len(in.RcptTo) == 0 {
		return nil, ErrNoRecipients
	}
	h := in.Header
	if err := CheckFields(h); err != nil {
		return nil, err
	}
	ha, err := parseHeader(&h, cs)
	if err != nil {
		return nil, fmt.Errorf("failed to parse header: %w", err)
	}
	senders := map[string]bool{}
	for a := range ha.author {
		senders[a] = true
	}
	if strings.TrimSpace(in.MailFrom) != "" && strings.TrimSpace(in.MailFrom) != "<>" {
		mf, err := normalizeEnvelope("MAIL FROM", in.MailFrom, cs)
		if err != nil {
			return nil, err
		}
		senders[mf] = true
	}
	dir, err := directory(in.Certs, cs)
	if err != nil {
		return nil, err
	}
	self, err := senderCerts(in, senders, dir)
	if err != nil {
		return nil, err
	}

	listed := map[string]string{}
	for _, a := range ha.bcc {
		if _, ok := listed[a.Norm]; !ok && !ha.shown[a.Norm] {
			listed[a.Norm] = a.Spec
		}
	}
	var rcpts []*recipient
	seen := map[string]bool{}
	for _, p := range in.RcptTo {
		a, err := parseEnvelope("RCPT TO", p, cs)
		if err != nil {
			return nil, err
		}
		n := a.Norm
		if seen[n] {
			continue
		}
		seen[n] = true
		r := &recipient{path: p, spec: a.Spec, norm: n, hidden: !ha.shown[n], listed: listed[n]}
		r.certs = choose(dir[n], pol.CertChoice)
		r.own = keyAgree(r.certs)
		r.profile = pol.recipientProfile(n, r.certs)
		rcpts = append(rcpts, r)
	}

	// Header policy: what each package's header may mention. A secret is
	// an address some package must not name: listed in a Bcc field or a
	// hidden envelope recipient, and in no field everyone reads.
	group := map[string]bool{}
	for n := range listed {
		group[n] = true
	}
	var secret []string
	secretSet := map[string]bool{}
	addSecret := func(n string) {
		if !ha.base[n] && !secretSet[n] {
			secretSet[n] = true
			secret = append(secret, n)
		}
	}
	for _, a := range ha.allBcc {
		addSecret(a.Norm)
	}
	for _, r := range rcpts {
		if r.hidden {
			group[r.norm] = true
			addSecret(r.norm)
		}
	}
	// Any other address a carried field names is someone outside every
	// visible set too (message identifiers aside, and Content-* fields,
	// which only participants can make refuse the message).
	for it := h.Fields(); it.Next(); {
		k := canonicalKey(it.Key())
		switch c := classOf(k); {
		case msgIDFields[k], c == classContent, c == classHidden, c == classDrop, c == classUnknown:
			continue
		case c == classTrace:
			for _, a := range addressesIn(stripReceived(it.Value()), cs) {
				addSecret(a)
			}
		default:
			for _, a := range addressesIn(it.Value(), cs) {
				addSecret(a)
			}
		}
	}
	sort.Strings(secret)
	fields, err := readFields(h, secret, cs)
	if err != nil {
		return nil, fmt.Errorf("failed to parse header: %w", err)
	}
	hp := &headerPlan{fields: fields, bccKey: ha.bccKey, bccAt: ha.bccAt, group: group}
	for _, f := range fields {
		if f.class == classContent {
			if len(f.mentions) > 0 {
				return nil, &FieldError{Field: f.key, Err: ErrHiddenInContent}
			}
			hp.inner.Fields = append(hp.inner.Fields, FieldEdit{Key: f.key, N: f.n})
		}
	}

	plan := &Plan{Inner: hp.inner, Protection: hp.protection(pol, rcpts)}
	var visible, hidden, plain []*recipient
	for _, r := range rcpts {
		switch {
		case len(r.certs) > 0 && r.hidden:
			hidden = append(hidden, r)
		case len(r.certs) > 0:
			visible = append(visible, r)
		case pol.MissingCert == Plaintext:
			plain = append(plain, r)
		default:
			plan.Refused = append(plan.Refused, Refusal{
				Recipient: r.path,
				Reason:    fmt.Sprintf("no valid encryption certificate for %q", r.spec),
				Code:      550,
				Enhanced:  "5.7.1",
				DSN:       pol.MissingCert == Drop,
			})
		}
	}

	// A recipient with a KeyAgree certificate is alone in its package, whatever the Bcc mode;
	// only such packages carry a self-copy KeyAgree certificate.
	shared := sharedSelf(self)
	var sharedVisible, sharedHidden []*recipient
	for _, r := range visible {
		if r.own {
			g := []*recipient{r}
			plan.add(encrypted(g, self, false, hp.edits(g, false, nil)))
		} else {
			sharedVisible = append(sharedVisible, r)
		}
	}
	for _, g := range byProfile(sharedVisible) {
		plan.add(encrypted(g, shared, false, hp.edits(g, false, nil)))
	}
	for _, r := range hidden {
		if r.own || pol.Bcc != Group {
			g := []*recipient{r}
			ps := shared
			if r.own {
				ps = self
			}
			plan.add(encrypted(g, ps, true, hp.edits(g, false, pol.ownBcc(r))))
		} else {
			sharedHidden = append(sharedHidden, r)
		}
	}
	if pol.Bcc == Group {
		var all []string
		if pol.KeepBcc {
			all = bccList(ha.bcc, ha.shown)
		}
		for _, g := range byProfile(sharedHidden) {
			plan.add(encrypted(g, shared, true, hp.edits(g, true, all)))
		}
	}
	for _, r := range plain {
		pk := Package{Recipients: []string{r.path}, Hidden: r.hidden, ReceivedFor: r.spec}
		var bcc []string
		if r.hidden {
			bcc = pol.ownBcc(r)
		}
		pk.Edits = hp.edits([]*recipient{r}, false, bcc)
		plan.Packages = append(plan.Packages, pk)
	}
	return plan, nil
}

func (p Policy) validate() error {
	if p.Bcc != Individual && p.Bcc != Group {
		return fmt.Errorf("%w: bcc mode %d", ErrInvalidPolicy, p.Bcc)
	}
	if p.MissingCert != Reject && p.MissingCert != Plaintext && p.MissingCert != Drop {
		return fmt.Errorf("%w: missing_cert %d", ErrInvalidPolicy, p.MissingCert)
	}
	if p.CertChoice != All && p.CertChoice != Newest {
		return fmt.Errorf("%w: cert choice %d", ErrInvalidPolicy, p.CertChoice)
	}
	return nil
}

// ownBcc is the Bcc field of a hidden recipient's own package: only itself,
// and only when the submitter had listed it in a Bcc field.
func (p Policy) ownBcc(r *recipient) []string {
	if !p.KeepBcc || r.listed == "" {
		return nil
	}
	return []string{r.listed}
}

// certProfile is the profile a certificate asks for.
func (p Policy) certProfile(owner string, c Cert) string {
	if c.Profile != "" {
		return c.Profile
	}
	if dp := p.DomainProfiles[owner[strings.LastIndexByte(owner, '@')+1:]]; dp != "" {
		return dp
	}
	if p.Profile != "" {
		return p.Profile
	}
	return ProfileCompat
}

// recipientProfile picks one profile per recipient, since a recipient is in
// exactly one package: the profile its certificates ask for; compat when any of
// them asks for it, or when they ask for different ones (every client reads
// compat, so every certificate's holder can read the package, where one holder's
// profile may be unreadable to another's client).
func (p Policy) recipientProfile(owner string, certs []Cert) string {
	asked := ""
	for _, c := range certs {
		pr := p.certProfile(owner, c)
		if pr == ProfileCompat || (asked != "" && pr != asked) {
			return ProfileCompat
		}
		asked = pr
	}
	return asked
}

// directory normalizes the directory's keys and checks each certificate
// belongs to its key, so a misfiled certificate cannot leak into a package.
func directory(certs map[string][]Cert, cs bool) (map[string][]Cert, error) {
	dir := make(map[string][]Cert, len(certs))
	owner := map[string]string{}
	for k, list := range certs {
		n, err := normalizeEnvelope("certificate key", k, cs)
		if err != nil {
			return nil, err
		}
		for _, c := range list {
			if err := checkCert(c, n, cs, owner); err != nil {
				return nil, err
			}
			dir[n] = appendCert(dir[n], c)
		}
	}
	return dir, nil
}

func checkCert(c Cert, want string, cs bool, owner map[string]string) error {
	if c.ID == "" {
		return fmt.Errorf("%w: empty ID for %q", ErrInvalidCert, want)
	}
	o, err := normalizeEnvelope("certificate owner", c.Owner, cs)
	if err != nil || o != want {
		return fmt.Errorf("%w: %q is owned by %q, listed for %q", ErrInvalidCert, c.ID, c.Owner, want)
	}
	if prev, ok := owner[c.ID]; ok && prev != o {
		return fmt.Errorf("%w: %q listed for both %q and %q", ErrInvalidCert, c.ID, prev, o)
	}
	owner[c.ID] = o
	return nil
}

// senderCerts returns the self-copy certificates, checking that each belongs
// to an author the recipients already see.
func senderCerts(in Input, senders map[string]bool, dir map[string][]Cert) ([]Cert, error) {
	if !in.Policy.SelfCopy || len(in.SenderCerts) == 0 {
		return nil, nil
	}
	cs := in.Policy.CaseSensitiveLocalPart
	owner := map[string]string{}
	for n, list := range dir {
		for _, c := range list {
			owner[c.ID] = n
		}
	}
	var list []Cert
	for _, c := range in.SenderCerts {
		o, err := normalizeEnvelope("sender certificate owner", c.Owner, cs)
		if err != nil || !senders[o] {
			return nil, fmt.Errorf("%w: sender certificate %q is owned by %q, not by the sender", ErrInvalidCert, c.ID, c.Owner)
		}
		if err := checkCert(c, o, cs, owner); err != nil {
			return nil, err
		}
		list = appendCert(list, c)
	}
	// One sender may own several addresses; choose per address.
	var out []Cert
	byOwner := map[string][]Cert{}
	var owners []string
	for _, c := range list {
		o := owner[c.ID]
		if _, ok := byOwner[o]; !ok {
			owners = append(owners, o)
		}
		byOwner[o] = append(byOwner[o], c)
	}
	for _, o := range owners {
		// A sender with a certificate of another kind uses it rather than a KeyAgree one, so
		// that the self-copy never makes a package unreadable for its other recipients.
		list := byOwner[o]
		if other := withoutKeyAgree(list); len(other) > 0 {
			list = other
		}
		out = append(out, choose(list, in.Policy.CertChoice)...)
	}
	return out, nil
}

// keyAgree reports whether any of certs is KeyAgree.
func keyAgree(certs []Cert) bool {
	for _, c := range certs {
		if c.KeyAgree {
			return true
		}
	}
	return false
}

func withoutKeyAgree(certs []Cert) []Cert {
	var out []Cert
	for _, c := range certs {
		if !c.KeyAgree {
			out = append(out, c)
		}
	}
	return out
}

// sharedSelf is the self-copy of packages that may hold several recipients or recipients without
// a KeyAgree certificate: the sender's KeyAgree certificates (a sender with no other kind) go only
// into the packages of recipients with one.
func sharedSelf(self []Cert) []Cert {
	if !keyAgree(self) {
		return self
	}
	return withoutKeyAgree(self)
}

func appendCert(list []Cert, c Cert) []Cert {
	for _, x := range list {
		if x.ID == c.ID {
			return list
		}
	}
	return append(list, c)
}

func choose(certs []Cert, how CertChoice) []Cert {
	if len(certs) == 0 {
		return nil
	}
	if how == All {
		return append([]Cert(nil), certs...)
	}
	best := certs[0]
	for _, c := range certs[1:] {
		if c.NotBefore.After(best.NotBefore) || (c.NotBefore.Equal(best.NotBefore) && c.ID < best.ID) {
			best = c
		}
	}
	return []Cert{best}
}

// byProfile groups recipients by profile, in sorted profile order.
func byProfile(rs []*recipient) [][]*recipient {
	m := map[string][]*recipient{}
	var keys []string
	for _, r := range rs {
		if _, ok := m[r.profile]; !ok {
			keys = append(keys, r.profile)
		}
		m[r.profile] = append(m[r.profile], r)
	}
	sort.Strings(keys)
	out := make([][]*recipient, 0, len(keys))
	for _, k := range keys {
		out = append(out, m[k])
	}
	return out
}

// bccList is every Bcc-listed address that is not also visible, deduplicated.
func bccList(bcc []addr, shown map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	for _, a := range bcc {
		if shown[a.Norm] || seen[a.Norm] {
			continue
		}
		seen[a.Norm] = true
		out = append(out, a.Spec)
	}
	return out
}

// headerPlan is the header policy of one message, applied per package.
type headerPlan struct {
	fields []hfield
	bccKey string
	bccAt  int
	group  map[string]bool // what a Group package of hidden recipients may name
	inner  HeaderEdits
}

// edits is the header of a package for rs: it may name rs themselves, and
// in a Group package of hidden recipients every hidden recipient.
func (hp *headerPlan) edits(rs []*recipient, groupHidden bool, bcc []string) HeaderEdits {
	own := map[string]bool{}
	for _, r := range rs {
		own[r.norm] = true
	}
	return edits(hp.fields, func(n string) bool { return own[n] || groupHidden && hp.group[n] }, hp.bccKey, bcc, hp.bccAt)
}

func encrypted(rs []*recipient, self []Cert, hidden bool, e HeaderEdits) Package {
	pk := Package{Profile: rs[0].profile, Hidden: hidden}
	for _, r := range rs {
		pk.Recipients = append(pk.Recipients, r.path)
		for _, c := range r.certs {
			pk.Certs = appendCert(pk.Certs, c)
		}
	}
	for _, c := range self {
		pk.Certs = appendCert(pk.Certs, c)
	}
	if len(rs) == 1 {
		pk.ReceivedFor = rs[0].spec
	}
	pk.Edits = e
	return pk
}

func (p *Plan) add(pk Package) {
	p.Packages = append(p.Packages, pk)
	i := sort.SearchStrings(p.Profiles, pk.Profile)
	if i == len(p.Profiles) || p.Profiles[i] != pk.Profile {
		p.Profiles = append(p.Profiles, "")
		copy(p.Profiles[i+1:], p.Profiles[i:])
		p.Profiles[i] = pk.Profile
	}
}
