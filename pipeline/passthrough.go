package pipeline

// Splitting a client-encrypted message (README, "Client-encrypted mail"): the directory says
// who owns each RecipientInfo, split plans which package carries which (split/passthrough.go,
// where the decisions are), seal builds each package from the client's CMS with those
// RecipientInfos. The encrypted content, AuthEnvelopedData's authenticated attributes and MAC
// are reused byte for byte. Detection is smime.Classify's, from the DER of every part: only an
// envelope that is the whole message is split (or, under policy, one under the client's
// signature, signed again); anything else the classifier cannot account for is refused
// (RefusedError). The client's originatorInfo and unprotected attributes are not passed on
// (cms Enveloped.WithRecipients leaves them out).

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"appliance/cms"
	"appliance/directory"
	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// The pass-through policy and plan are split's (split/passthrough.go); these names keep the
// pipeline's API.
type (
	UnknownRecipientInfo      = split.UnknownRecipientInfo
	MissingRecipientInfo      = split.MissingRecipientInfo
	SignedOverEncryptedPolicy = split.SignedOverEncryptedPolicy
	PassThroughPolicy         = split.PassThroughPolicy
	PassThroughPlan           = split.PassThroughPlan
	PlannedRecipientInfo      = split.PlannedRecipientInfo
	PlannedPackage            = split.PlannedPackage
)

const (
	DropUnknown               = split.DropUnknown
	RejectUnknown             = split.RejectUnknown
	RefuseMissing             = split.RefuseMissing
	DeliverMissing            = split.DeliverMissing
	RefuseSignedOverEncrypted = split.RefuseSignedOverEncrypted
	ResignSignedOverEncrypted = split.ResignSignedOverEncrypted
	PassThroughProfile        = split.PassThroughProfile
)

var (
	ErrInvalidPassThroughPolicy = split.ErrInvalidPassThroughPolicy
	ErrUnsplittable             = split.ErrUnsplittable
	ErrRecipientInfoRejected    = split.ErrRecipientInfoRejected
	// ErrNotClientEncrypted reports a message that is not application/pkcs7-mime (or an
	// application/octet-stream *.p7m): there is nothing to split.
	ErrNotClientEncrypted = errors.New("message is not client-encrypted")
)

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
				log.Warn("recipientinfo dropped", "index", ri.Index, "kind", ri.Kind,
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

	in, err := p.passThroughInput(env, pkg.Header, pt.env.RecipientInfos)
	if err != nil {
		// The directory cannot answer now: planning without it could drop a recipient's
		// RecipientInfo, so the message waits.
		return nil, tempError{fmt.Errorf("failed to split: %w", err)}
	}
	plan, err := split.PlanPassThrough(in)
	if plan == nil {
		return nil, err
	}
	plan.Label, plan.ContentType = pt.pub.Label, pt.pub.ContentType
	pt.pub = plan
	return pt, err
}

// passThroughInput asks the directory who owns each RecipientInfo: the envelope recipients'
// certificates (valid or not: a certificate that expired since the client encrypted still
// names its owner), the authors' from the directory and the configured chain, and the
// directory's identifier index for each RecipientInfo (one lookup each).
func (p *Pipeline) passThroughInput(env queue.Envelope, h textproto.Header, ris []*cms.RecipientInfo) (split.PassThroughInput, error) {
	cs := p.opts.Policy.CaseSensitiveLocalPart
	in := split.PassThroughInput{Header: h, MailFrom: env.MailFrom, RcptTo: env.RcptTo, Policy: p.opts.Policy,
		PassThrough: p.opts.PassThrough, Owners: map[string]split.KeyOwner{},
		Authors: split.PassThroughAuthors(env.MailFrom, h, cs)}
	addCert := func(c *x509.Certificate, o split.KeyOwner) {
		for _, k := range cms.CertIDKeys(c) {
			if prev, ok := in.Owners[k]; !ok || (o.Recipient && !prev.Recipient) {
				in.Owners[k] = o
			}
		}
	}
	var lookupErr error
	lookup := func(addr string, o split.KeyOwner) {
		valid, rejected, err := p.opts.Directory.LookupContext(context.Background(), addr)
		if err != nil && lookupErr == nil {
			lookupErr = fmt.Errorf("failed to look up certificates of %q: %w", addr, err)
		}
		for _, e := range valid {
			addCert(e.Cert, o)
		}
		for _, r := range rejected {
			addCert(r.Cert, o)
		}
	}
	// Authors first, so an address that is both keeps the recipient role.
	for _, a := range in.Authors {
		lookup(a, split.KeyOwner{Addr: a})
		if s, ok := p.SenderFor(a); ok && len(s.Chain) > 0 {
			addCert(s.Chain[0], split.KeyOwner{Addr: a})
		}
	}
	rcpts := map[string]bool{}
	for _, r := range env.RcptTo {
		n, err := split.Normalize(r, cs)
		if err != nil || rcpts[n] {
			continue // split refuses an unparsable path with a reason
		}
		rcpts[n] = true
		lookup(n, split.KeyOwner{Addr: n, Recipient: true})
	}
	descs := map[string]string{} // identifier key -> DescribeID, which parses the issuer
	in.RecipientInfos = make([]split.RecipientRef, len(ris))
	for i, ri := range ris {
		key := ri.IDKey()
		desc, ok := descs[key]
		if !ok {
			desc = ri.DescribeID()
			descs[key] = desc
		}
		owner, err := p.ownerOf(ri)
		in.RecipientInfos[i] = split.RecipientRef{Key: key, Kind: ri.Kind.String(), ID: desc,
			Ambiguous: errors.Is(err, directory.ErrAmbiguousIdentifier)}
		if err == nil {
			in.RecipientInfos[i].DirOwner = owner
		}
	}
	return in, lookupErr
}

// ownerOf asks the directory's identifier index, for the log line of a dropped RecipientInfo.
func (p *Pipeline) ownerOf(ri *cms.RecipientInfo) (string, error) {
	if ri.SubjectKeyID != nil {
		return p.opts.Directory.OwnerBySKI(ri.SubjectKeyID)
	}
	return p.opts.Directory.OwnerByIssuerSerial(ri.Issuer, ri.Serial)
}
