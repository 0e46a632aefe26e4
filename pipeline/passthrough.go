package pipeline

// Splitting a client-encrypted message (README, "Client-encrypted mail").
//
// A sender's client that encrypts to every recipient, Bcc included, names the hidden recipients
// to everyone through the RecipientInfos. The appliance repairs that without the plaintext and
// without anyone's private key: each RecipientInfo is attributed to an owner by its identifier,
// split plans the packages exactly as for plain mail (each RecipientInfo group is fed to it as a
// certificate "ri:N" of its owner, so the same oracle checks the privacy rule and completeness),
// and each package is the client's CMS re-encoded with the RecipientInfos the plan allows. The
// encrypted content, AuthEnvelopedData's authenticated attributes and MAC are reused byte for
// byte, so whatever the client signed inside stays signed and every recipient can still decrypt.
//
// Decisions:
//   - Detection is smime.Classify's, which looks at the DER of every part, not at labels: only
//     an envelope that is the whole message (labelled application/pkcs7-mime, x-pkcs7-mime or a
//     *.p7m octet-stream, whatever its smime-type says) is split. Signed-data over plain content
//     is sealed as ordinary content; an envelope anywhere else, under a signature, or any CMS
//     the classifier cannot account for is refused (see RefusedError).
//   - The client's originatorInfo and unprotected (or unauthenticated) attributes are not
//     passed on: they are covered by no signature or MAC and can name anyone (cms
//     Enveloped.WithRecipients leaves them out).
//   - A RecipientInfo is kept only when its owner is an envelope recipient (then it goes where
//     split puts that recipient) or the sender (self-copy, visible to everyone). Any other,
//     including KeyAgree, KEK, Password and Other entries that cannot be attributed, is dropped
//     from every package and logged, or the message is refused ([RejectUnknown]).
//   - An envelope recipient without a RecipientInfo cannot be served without decrypting. Under
//     [RefuseMissing] it is refused with a DSN. Under [DeliverMissing] it gets the message with
//     only the RecipientInfos every recipient may see (the visible recipients' and the
//     sender's): "as is" would show it the hidden ones. That package is only readable if the
//     recipient holds one of those keys (a shared role key, a certificate missing from the
//     directory), so it is the operator's explicit choice, not the default; with no such
//     RecipientInfo at all the recipient is refused as under RefuseMissing.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/mail"
	"sort"
	"strconv"
	"strings"

	"appliance/cms"
	"appliance/directory"
	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// UnknownRecipientInfo is the policy for a RecipientInfo whose owner is unknown or not an
// envelope recipient (configuration key policy.unknown_recipientinfo).
type UnknownRecipientInfo int

const (
	// DropUnknown removes such RecipientInfos from every package ("drop", the default).
	DropUnknown UnknownRecipientInfo = iota
	// RejectUnknown refuses the whole message ("reject": 554 5.7.1 at end of DATA).
	RejectUnknown
)

// MissingRecipientInfo is the policy for an envelope recipient that no RecipientInfo names
// (configuration key policy.passthrough_missing).
type MissingRecipientInfo int

const (
	// RefuseMissing refuses the recipient with a DSN ("refuse", the default).
	RefuseMissing MissingRecipientInfo = iota
	// DeliverMissing delivers a package carrying only RecipientInfos visible to the recipient
	// ("deliver"); see the file comment for why nothing more can be given.
	DeliverMissing
)

// SignedOverEncryptedPolicy is what happens to a client's envelope under the client's
// signature (configuration key policy.signed_over_encrypted).
type SignedOverEncryptedPolicy int

const (
	// RefuseSignedOverEncrypted refuses the message ("refuse", the default): the signature
	// covers every RecipientInfo, so any split breaks it.
	RefuseSignedOverEncrypted SignedOverEncryptedPolicy = iota
	// ResignSignedOverEncrypted splits the inner envelope as a client-encrypted message is
	// split and signs each package again with the sender's key on the HSM ("resign"): the
	// recipients see the appliance's signature for the sender instead of the client's.
	ResignSignedOverEncrypted
)

// PassThroughPolicy shapes how client-encrypted messages are split. The zero value is the
// configuration's defaults.
type PassThroughPolicy struct {
	Unknown UnknownRecipientInfo
	Missing MissingRecipientInfo
	// SignedOverEncrypted is the policy for an envelope under the client's signature.
	SignedOverEncrypted SignedOverEncryptedPolicy
	// MaxRecipientInfos caps the RecipientInfos accepted in one message; 0 means
	// cms.DefaultMaxRecipientInfos.
	MaxRecipientInfos int
}

// ErrInvalidPassThroughPolicy reports an out-of-range PassThroughPolicy value.
var ErrInvalidPassThroughPolicy = errors.New("invalid pass-through policy")

func (pol PassThroughPolicy) validate() error {
	switch {
	case pol.Unknown != DropUnknown && pol.Unknown != RejectUnknown:
		return fmt.Errorf("%w: unknown_recipientinfo %d", ErrInvalidPassThroughPolicy, pol.Unknown)
	case pol.Missing != RefuseMissing && pol.Missing != DeliverMissing:
		return fmt.Errorf("%w: passthrough_missing %d", ErrInvalidPassThroughPolicy, pol.Missing)
	case pol.SignedOverEncrypted != RefuseSignedOverEncrypted && pol.SignedOverEncrypted != ResignSignedOverEncrypted:
		return fmt.Errorf("%w: signed_over_encrypted %d", ErrInvalidPassThroughPolicy, pol.SignedOverEncrypted)
	case pol.MaxRecipientInfos < 0:
		return fmt.Errorf("%w: max recipientinfos %d", ErrInvalidPassThroughPolicy, pol.MaxRecipientInfos)
	}
	return nil
}

var (
	// ErrNotClientEncrypted reports a message that is not application/pkcs7-mime (or an
	// application/octet-stream *.p7m): there is nothing to split.
	ErrNotClientEncrypted = errors.New("message is not client-encrypted")
	// ErrUnsplittable reports a client-encrypted message that cannot be split: malformed MIME
	// or CMS, an unsupported RecipientInfo version, too many RecipientInfos. Permanent.
	ErrUnsplittable = errors.New("client-encrypted message cannot be split")
	// ErrRecipientInfoRejected reports, under RejectUnknown, a RecipientInfo that belongs to no
	// envelope recipient and not to the sender. The front end answers 554 5.7.1.
	ErrRecipientInfoRejected = errors.New("message carries a recipientinfo of no envelope recipient")
)

// PassThroughProfile is the split profile of every package of a client-encrypted message: the
// client chose the algorithms, so all recipients share one encryption, whatever the policy's
// profiles say.
const PassThroughProfile = "passthrough"

// PassThroughPlan is what splitting a client-encrypted message does, for `appliance inspect` and
// the audit log.
type PassThroughPlan struct {
	// Opaque is set when the content is not EnvelopedData or AuthEnvelopedData (signed-data,
	// compressed-data, ...): nothing is split, the message is sealed as ordinary content and
	// only ContentType and Label are set.
	Opaque bool
	// ContentType is the smime-type the DER says (e.g. "enveloped-data"), or the content type
	// OID in dotted form when it is none of RFC 8551's.
	ContentType string
	// Label is the smime-type parameter as written; it may be missing or disagree.
	Label string
	// RecipientInfos lists every RecipientInfo of the message, in order.
	RecipientInfos []PlannedRecipientInfo
	// Packages are the outgoing packages, in the order of Plan.Packages.
	Packages []PlannedPackage
	// Refused are the envelope recipients that get no package, with their reasons.
	Refused []split.Refusal
	// Plan is split's plan, certificates named "ri:N" after the first RecipientInfo of each
	// group naming one certificate.
	Plan *split.Plan
}

// PlannedRecipientInfo is one RecipientInfo and what happens to it.
type PlannedRecipientInfo struct {
	Index int
	Kind  cms.RecipientKind
	// ID describes the identifier: "issuer=<DN> serial=<hex>" or "ski=<hex>"; "" when the
	// kind carries none that can be attributed.
	ID string
	// Owner is the address the identifier maps to, "" when unknown.
	Owner string
	// Sender is set when Owner is the sender (the self-copy).
	Sender bool
	// Packages are the indexes of the packages carrying it; empty when Dropped.
	Packages []int
	// Dropped says why it goes into no package; "" when it is kept.
	Dropped string
}

// PlannedPackage is one outgoing package of a client-encrypted message.
type PlannedPackage struct {
	Recipients []string
	Hidden     bool
	// RecipientInfos are the indexes of the RecipientInfos it carries, ascending.
	RecipientInfos []int
	// Owners are the distinct owners of those RecipientInfos.
	Owners []string
}

// PlanPassThrough reports what splitting msg for env would do, without building anything. It
// fails with ErrNotClientEncrypted for a message without CMS at the top, with a *RefusedError
// for one the classifier refuses, and wraps ErrUnsplittable or ErrRecipientInfoRejected as
// splitting would. A top-level CMS that is no envelope (signed-data over plain content) gives
// an Opaque plan.
func (p *Pipeline) PlanPassThrough(env queue.Envelope, msg []byte) (*PassThroughPlan, error) {
	pt, err := p.planPassThrough(env, msg, smime.Classify(msg))
	if err != nil {
		return nil, err
	}
	return pt.pub, nil
}

// CheckMessage is asked by the front end at end of DATA, before the message is accepted. It
// classifies the message as sealing will: what the classifier refuses (a *RefusedError
// wrapping ErrUnaccountable or ErrSignedOverEncrypted) is refused now, and for a
// client-encrypted message what splitting would later refuse (ErrUnsplittable,
// ErrRecipientInfoRejected) too, so the client learns it now rather than from a bounce.
// Plain messages pass. A message signed over its encryption passes only when every envelope
// recipient is a list.
func (p *Pipeline) CheckMessage(_ context.Context, env queue.Envelope, msg []byte) error {
	c := smime.Classify(msg)
	lists, rest := p.listsIn(env)
	if err := p.refusal(c, len(lists) > 0 && len(rest.RcptTo) == 0); err != nil {
		return err
	}
	if (c.Class != smime.ClientEncrypted && c.Class != smime.SignedOverEncrypted) || len(rest.RcptTo) == 0 {
		return nil
	}
	_, err := p.planPassThrough(rest, msg, c)
	return err
}

// passThrough splits a client-encrypted message into packages without decrypting it.
func (p *Pipeline) passThrough(ctx context.Context, id string, env queue.Envelope, msg []byte, c *smime.Classification) (*Result, error) {
	log := p.opts.Logger.With("id", id)
	if _, ok := p.SenderFor(env.MailFrom); !ok {
		return nil, fmt.Errorf("failed to split: %w: %q", ErrUnknownSender, env.MailFrom)
	}
	pt, err := p.planPassThrough(env, msg, c)
	if pt != nil && pt.pub.Opaque {
		// The classifier said client-encrypted: the parser must agree.
		return nil, fmt.Errorf("failed to split: %w: the content is %s", ErrUnsplittable, pt.pub.ContentType)
	}
	if pt != nil {
		// A hostile message may carry thousands: the first few are enough to audit, the
		// count says the rest.
		dropped := 0
		for _, ri := range pt.pub.RecipientInfos {
			if ri.Dropped == "" {
				continue
			}
			if dropped++; dropped <= maxDropLogs {
				log.Warn("recipientinfo dropped", "index", ri.Index, "kind", ri.Kind.String(),
					"id", ri.ID, "owner", ri.Owner, "reason", ri.Dropped)
			}
		}
		if dropped > maxDropLogs {
			log.Warn("recipientinfos dropped", "count", dropped, "not_logged", dropped-maxDropLogs)
		}
	}
	if err != nil {
		return nil, err
	}
	if pt.pkg.SMIMEType != pt.pub.ContentType {
		log.Warn("smime-type label disagrees with the content", "smime_type", pt.pub.Label, "content_type", pt.pub.ContentType)
	}
	if f := pt.env.UnsignedFields(); f != nil {
		log.Info("client envelope fields not passed on", "fields", f)
	}

	var resign *seal.Sender
	if c.Class == smime.SignedOverEncrypted {
		// Only the sender's own key signs again (SenderFor checked above), on the HSM.
		sender, _ := p.SenderFor(env.MailFrom)
		signer, err := p.opts.Token.Signer(ctx, sender.KeyURI)
		if err != nil {
			return nil, fmt.Errorf("failed to find the signing key of %q: %w", sender.Address, err)
		}
		resign = &seal.Sender{Signer: signer, Chain: sender.Chain, PSS: sender.PSS}
		log.Info("client signature over the encryption replaced", "layers", len(c.Layers))
	}
	out := &seal.Sealed{}
	for i, pk := range pt.pub.Plan.Packages {
		idx := pt.pub.Packages[i].RecipientInfos
		ris := make([]*cms.RecipientInfo, len(idx))
		for j, n := range idx {
			ris[j] = pt.env.RecipientInfos[n]
		}
		der, err := pt.env.WithRecipients(ris)
		if err != nil {
			return nil, fmt.Errorf("failed to split: %w: %w", ErrUnsplittable, err)
		}
		var sp *seal.Package
		if resign != nil {
			sp, err = p.sealer.NewResigned(pk, pt.pkg.Header, pt.pub.ContentType, der, *resign)
		} else {
			sp, err = seal.NewPassThrough(pk, pt.pkg.Header, pt.pub.ContentType, der)
		}
		if err != nil {
			return nil, fmt.Errorf("failed to split: %w", err)
		}
		out.Packages = append(out.Packages, sp)
	}
	seal.ShareContent(out.Packages)
	return &Result{Plan: pt.pub.Plan, Sealed: out}, nil
}

// maxDropLogs is how many dropped RecipientInfos of one message get a log line each.
const maxDropLogs = 10

// ptPlan is a PassThroughPlan with what building the packages needs.
type ptPlan struct {
	pub *PassThroughPlan
	pkg *smime.Package
	env *cms.Enveloped
}

// planPassThrough parses msg and plans its split. On ErrRecipientInfoRejected it also returns
// the plan, so the caller can log what was refused.
func (p *Pipeline) planPassThrough(env queue.Envelope, msg []byte, c *smime.Classification) (*ptPlan, error) {
	switch {
	case c.Class == smime.Plain && len(c.Layers) > 0 && c.Layers[0].Path == "":
		// CMS at the top that hides nothing (signed-data over plain content).
		return &ptPlan{pub: &PassThroughPlan{Opaque: true, ContentType: c.Layers[0].Type, Label: c.Layers[0].Label}}, nil
	case c.Class == smime.Plain:
		return nil, ErrNotClientEncrypted
	case c.Class == smime.SignedOverEncrypted && p.opts.PassThrough.SignedOverEncrypted == ResignSignedOverEncrypted:
	case c.Class != smime.ClientEncrypted:
		return nil, p.refusal(c, false)
	}
	pol := p.opts.PassThrough
	// One reading of the message decides: what is split is the envelope the classifier saw.
	pkg, err := c.Package(msg)
	if err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", ErrUnsplittable, err)
	}
	pt := &ptPlan{pkg: pkg, pub: &PassThroughPlan{Label: pkg.RawSMIMEType, ContentType: c.EnvelopeType}}
	if pt.env, err = cms.ParseEnvelopedWith(pkg.DER, cms.ParseOptions{MaxRecipientInfos: pol.MaxRecipientInfos}); err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", ErrUnsplittable, err)
	}

	a, err := p.attribute(env, pkg.Header, pt.env.RecipientInfos)
	if err != nil {
		// The directory cannot answer now: planning without it could drop a recipient's
		// RecipientInfo, so the message waits.
		return nil, tempError{fmt.Errorf("failed to split: %w", err)}
	}
	in := split.Input{
		Header:   pkg.Header,
		MailFrom: env.MailFrom,
		RcptTo:   env.RcptTo,
		Certs:    a.certs,
		Policy:   p.opts.Policy,
	}
	in.SenderCerts = a.self
	// The client chose the algorithms and the identities: keep every RecipientInfo a recipient
	// owns and the sender's own, in one profile.
	in.Policy.SelfCopy = true
	in.Policy.CertChoice = split.All
	in.Policy.Profile = PassThroughProfile
	in.Policy.DomainProfiles = nil
	in.Policy.MissingCert = split.Drop
	if pol.Missing == DeliverMissing {
		in.Policy.MissingCert = split.Plaintext
	}
	plan, err := split.Make(in)
	if err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", ErrUnsplittable, err)
	}
	// The oracle costs little next to the message and turns a planning mistake into a refusal
	// instead of a leak.
	if err := split.CheckPrivacy(in, plan); err != nil {
		return nil, fmt.Errorf("failed to split: %w", err)
	}
	finishPlan(plan, in.SenderCerts)
	pt.pub.Plan = plan
	pt.pub.Refused = plan.Refused

	pt.pub.RecipientInfos = a.planned
	// The refusal names the first three dropped RecipientInfos and counts the rest: a message
	// may carry thousands, and memory follows the input, not the refusal's text.
	var rejected []string
	nRejected := 0
	for _, ri := range a.planned {
		if ri.Dropped != "" {
			if nRejected < 3 {
				rejected = append(rejected, fmt.Sprintf("#%d (%s)", ri.Index, ri.Dropped))
			}
			nRejected++
		}
	}
	for i, pk := range plan.Packages {
		pp := PlannedPackage{Recipients: pk.Recipients, Hidden: pk.Hidden}
		seen := map[string]bool{}
		for _, c := range pk.Certs {
			for _, n := range a.groups[c.ID] {
				pp.RecipientInfos = append(pp.RecipientInfos, n)
				a.planned[n].Packages = append(a.planned[n].Packages, i)
			}
			if !seen[c.Owner] {
				seen[c.Owner] = true
				pp.Owners = append(pp.Owners, c.Owner)
			}
		}
		sort.Ints(pp.RecipientInfos)
		pt.pub.Packages = append(pt.pub.Packages, pp)
	}
	for i := range a.planned {
		if ri := &a.planned[i]; ri.Dropped == "" && len(ri.Packages) == 0 {
			// The sender's self-copy goes into every encrypted package, and there may be
			// none when every recipient is refused. Not the client's fault: not rejected.
			ri.Dropped = "no package carries it"
		}
	}
	if pol.Unknown == RejectUnknown && nRejected > 0 {
		if nRejected > 3 {
			rejected = append(rejected, fmt.Sprintf("and %d more", nRejected-3))
		}
		return pt, fmt.Errorf("failed to split: %w: %s", ErrRecipientInfoRejected, strings.Join(rejected, ", "))
	}
	return pt, nil
}

// finishPlan turns split's plan into the pass-through one: the refusal reasons say why, and
// under DeliverMissing (fed to split as Plaintext) each signed-only package becomes one with
// the RecipientInfos every recipient may see, or a refusal when there are none.
func finishPlan(plan *split.Plan, self []split.Cert) {
	for i := range plan.Refused {
		plan.Refused[i].Reason = missingReason(plan.Refused[i].Recipient)
	}
	var visible []split.Cert
	for _, pk := range plan.Packages {
		if !pk.Hidden && pk.Profile != "" {
			visible = append(visible, pk.Certs...)
		}
	}
	if visible == nil {
		// No visible package: the self-copy alone is what everyone may see.
		visible = self
	}
	kept := plan.Packages[:0]
	for _, pk := range plan.Packages {
		if pk.Profile != "" {
			kept = append(kept, pk)
			continue
		}
		if len(visible) == 0 {
			plan.Refused = append(plan.Refused, split.Refusal{
				Recipient: pk.Recipients[0], Reason: missingReason(pk.Recipients[0]),
				Code: 550, Enhanced: "5.7.1", DSN: true,
			})
			continue
		}
		pk.Certs = append([]split.Cert(nil), visible...)
		pk.Profile = PassThroughProfile
		kept = append(kept, pk)
	}
	plan.Packages = kept
	plan.Profiles = nil
	if len(kept) > 0 {
		plan.Profiles = []string{PassThroughProfile}
	}
}

func missingReason(rcpt string) string {
	return fmt.Sprintf("no RecipientInfo for %q; the appliance does not decrypt", strings.Trim(rcpt, "<>"))
}

// attribution is every RecipientInfo mapped to an owner, grouped by the certificate it names.
type attribution struct {
	certs   map[string][]split.Cert // envelope recipient -> its groups, as split wants them
	self    []split.Cert            // the sender's groups
	groups  map[string][]int        // "ri:N" -> indexes of the RecipientInfos of the group
	planned []PlannedRecipientInfo
}

// attribute maps each RecipientInfo to an owner. Envelope recipients' certificates come from
// the directory (valid or not: a certificate that expired since the client encrypted still
// names its owner), the sender's from the directory and its configured chain. Grouping by
// certificate keeps what split sees bounded by the directory, however many RecipientInfos a
// hostile message repeats.
func (p *Pipeline) attribute(env queue.Envelope, h textproto.Header, ris []*cms.RecipientInfo) (*attribution, error) {
	cs := p.opts.Policy.CaseSensitiveLocalPart
	type owner struct {
		addr string
		rcpt bool
	}
	index := map[string]owner{}
	addCert := func(c *x509.Certificate, o owner) {
		for _, k := range cms.CertIDKeys(c) {
			if prev, ok := index[k]; !ok || (o.rcpt && !prev.rcpt) {
				index[k] = o
			}
		}
	}
	var lookupErr error
	lookup := func(addr string) []*x509.Certificate {
		valid, rejected, err := p.opts.Directory.LookupContext(context.Background(), addr)
		if err != nil && lookupErr == nil {
			lookupErr = fmt.Errorf("failed to look up certificates of %q: %w", addr, err)
		}
		out := make([]*x509.Certificate, 0, len(valid)+len(rejected))
		for _, e := range valid {
			out = append(out, e.Cert)
		}
		for _, r := range rejected {
			out = append(out, r.Cert)
		}
		return out
	}
	// Senders first, so an address that is both keeps the recipient role.
	authors := map[string]bool{}
	for _, a := range authorsOf(env, h, cs) {
		authors[a] = true
		for _, c := range lookup(a) {
			addCert(c, owner{addr: a})
		}
		if s, ok := p.SenderFor(a); ok && len(s.Chain) > 0 {
			addCert(s.Chain[0], owner{addr: a})
		}
	}
	rcpts := map[string]bool{}
	for _, r := range env.RcptTo {
		n, err := split.Normalize(r, cs)
		if err != nil || rcpts[n] {
			continue // split refuses an unparsable path with a reason
		}
		rcpts[n] = true
		for _, c := range lookup(n) {
			addCert(c, owner{addr: n, rcpt: true})
		}
	}

	a := &attribution{certs: map[string][]split.Cert{}, groups: map[string][]int{}}
	groupOf := map[string]string{} // identifier key -> "ri:N"
	descs := map[string]string{}   // identifier key -> DescribeID, which parses the issuer
	a.planned = make([]PlannedRecipientInfo, 0, len(ris))
	for i, ri := range ris {
		key := ri.IDKey()
		desc, ok := descs[key]
		if !ok {
			desc = ri.DescribeID()
			descs[key] = desc
		}
		pr := PlannedRecipientInfo{Index: i, Kind: ri.Kind, ID: desc}
		// One directory lookup per RecipientInfo: it both fails closed on an identifier two owners
		// claim and names the owner of one dropped below.
		owner, ownerErr := p.ownerOf(ri)
		if key != "" && errors.Is(ownerErr, directory.ErrAmbiguousIdentifier) {
			pr.Dropped = "identifier claimed by certificates of more than one owner" // fail closed
			a.planned = append(a.planned, pr)
			continue
		}
		switch o, ok := index[key]; {
		case key == "":
			pr.Dropped = unattributable[ri.Kind]
			if pr.Dropped == "" {
				pr.Dropped = "recipientinfo cannot be attributed"
			}
		case ok:
			pr.Owner, pr.Sender = o.addr, authors[o.addr]
			id, seen := groupOf[key]
			if !seen {
				id = "ri:" + strconv.Itoa(i)
				groupOf[key] = id
				c := split.Cert{ID: id, Owner: o.addr, Profile: PassThroughProfile, KeyAgree: ri.Kind == cms.KeyAgree}
				if o.rcpt {
					a.certs[o.addr] = append(a.certs[o.addr], c)
				}
				if authors[o.addr] {
					a.self = append(a.self, c)
				}
			}
			a.groups[id] = append(a.groups[id], i)
		default:
			pr.Dropped = "owner unknown"
			if ownerErr == nil {
				pr.Owner = owner
				pr.Dropped = "owner is not an envelope recipient"
			}
		}
		a.planned = append(a.planned, pr)
	}
	return a, lookupErr
}

// unattributable are the reasons for RecipientInfos without an identifier that names a
// certificate, made once rather than per RecipientInfo of a message that may carry thousands.
var unattributable = map[cms.RecipientKind]string{
	cms.KeyAgree: "keyagree recipientinfo cannot be attributed",
	cms.KEK:      "kek recipientinfo cannot be attributed",
	cms.Password: "password recipientinfo cannot be attributed",
	cms.Other:    "other recipientinfo cannot be attributed",
}

// ownerOf asks the directory's identifier index, for the log line of a dropped RecipientInfo.
func (p *Pipeline) ownerOf(ri *cms.RecipientInfo) (string, error) {
	if ri.SubjectKeyID != nil {
		return p.opts.Directory.OwnerBySKI(ri.SubjectKeyID)
	}
	return p.opts.Directory.OwnerByIssuerSerial(ri.Issuer, ri.Serial)
}

// authorsOf are the sender identities whose RecipientInfo is a self-copy: MAIL FROM, From and
// Sender, normalized. All of them are visible to every recipient.
func authorsOf(env queue.Envelope, h textproto.Header, cs bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if n, err := split.Normalize(s, cs); err == nil && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	if mf := strings.TrimSpace(env.MailFrom); mf != "" && mf != "<>" {
		add(mf)
	}
	for _, f := range []string{"From", "Sender"} {
		if v := h.Get(f); v != "" {
			if list, err := mail.ParseAddressList(v); err == nil {
				for _, a := range list {
					add(a.Address)
				}
			}
		}
	}
	return out
}
