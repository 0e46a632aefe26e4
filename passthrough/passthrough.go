// Package passthrough is the mode for client-encrypted mail (README, "Client-encrypted mail"):
// a client's envelope is split into packages without decrypting it. The directory says who owns
// each RecipientInfo (this package asks it), split plans which package carries which
// (split/passthrough.go, where the decisions are), and seal builds each package from the
// client's CMS with those RecipientInfos (or signs it again, for an envelope that was under the
// client's signature). The encrypted content, AuthEnvelopedData's authenticated attributes and
// MAC are reused byte for byte; the client's originatorInfo and unprotected attributes are not
// passed on (cms Enveloped.WithRecipients leaves them out).
//
// Which messages come here is the classifier's (smime.Classify) and the pipeline's decision.
package passthrough

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"

	"appliance/cms"
	"appliance/directory"
	"appliance/queue"
	"appliance/retry"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// Options wire a Splitter.
type Options struct {
	Directory   *directory.Directory
	Sealer      *seal.Sealer
	Policy      split.Policy
	PassThrough split.PassThroughPolicy
	// SenderCert is the configured certificate of a normalized sender address, nil for none: a
	// RecipientInfo for it is the sender's self-copy.
	SenderCert func(addr string) *x509.Certificate
	// Logger gets the RecipientInfos dropped and the fields not passed on; nil discards.
	Logger *slog.Logger
}

// Splitter splits client-encrypted messages. It is safe for concurrent use.
type Splitter struct{ opts Options }

// New makes a Splitter.
func New(o Options) *Splitter {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SenderCert == nil {
		o.SenderCert = func(string) *x509.Certificate { return nil }
	}
	return &Splitter{opts: o}
}

// Plan is a client's envelope read and its split planned.
type Plan struct {
	*split.PassThroughPlan
	pkg *smime.Package
	env *cms.Enveloped
}

// Plan reads the envelope the classifier found in msg (c says where) and plans its split. On
// split.ErrRecipientInfoRejected it also returns the plan, so the caller can log what was
// refused. A directory that cannot answer is a temporary error: planning without it could drop
// a recipient's RecipientInfo.
func (s *Splitter) Plan(env queue.Envelope, msg []byte, c *smime.Classification) (*Plan, error) {
	// One reading of the message decides: what is split is the envelope the classifier saw.
	pkg, err := c.Package(msg)
	if err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", split.ErrUnsplittable, err)
	}
	pt := &Plan{pkg: pkg}
	if pt.env, err = cms.ParseEnvelopedWith(pkg.DER, cms.ParseOptions{MaxRecipientInfos: s.opts.PassThrough.MaxRecipientInfos}); err != nil {
		return nil, fmt.Errorf("failed to split: %w: %w", split.ErrUnsplittable, err)
	}
	in, err := s.input(env, pkg.Header, pt.env.RecipientInfos)
	if err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to split: %w", err))
	}
	if pt.PassThroughPlan, err = split.PlanPassThrough(in); pt.PassThroughPlan == nil {
		return nil, err
	}
	pt.Label, pt.ContentType = pkg.RawSMIMEType, c.EnvelopeType
	return pt, err
}

// ErrNotClientEncrypted reports a message that is not application/pkcs7-mime (or an
// application/octet-stream *.p7m): there is nothing to split.
var ErrNotClientEncrypted = errors.New("message is not client-encrypted")

// Inspect reports what splitting msg for env would do, without building anything, for a message
// the classifier did not refuse (c). It fails with ErrNotClientEncrypted for a message without
// CMS at the top, and wraps split.ErrUnsplittable or split.ErrRecipientInfoRejected as
// splitting would. A top-level CMS that is no envelope (signed-data over plain content) gives
// an Opaque plan.
func (s *Splitter) Inspect(env queue.Envelope, msg []byte, c *smime.Classification) (*split.PassThroughPlan, error) {
	switch {
	case c.Class == smime.Plain && len(c.Layers) > 0 && c.Layers[0].Path == "":
		// CMS at the top that hides nothing (signed-data over plain content).
		return &split.PassThroughPlan{Opaque: true, ContentType: c.Layers[0].Type, Label: c.Layers[0].Label}, nil
	case c.Class == smime.Plain:
		return nil, ErrNotClientEncrypted
	}
	pt, err := s.Plan(env, msg, c)
	if err != nil {
		return nil, err
	}
	return pt.PassThroughPlan, nil
}

// maxDropLogs is how many dropped RecipientInfos of one message get a log line each.
const maxDropLogs = 10

// Split plans and builds the packages of a client-encrypted message. resign, when set, gives
// the signer that signs each package again (an envelope that was under the client's
// signature); it is asked once the plan stands.
func (s *Splitter) Split(id string, env queue.Envelope, msg []byte, c *smime.Classification, resign func() (*seal.Sender, error)) (*split.Plan, *seal.Sealed, error) {
	log := s.opts.Logger.With("id", id)
	pt, err := s.Plan(env, msg, c)
	if pt != nil {
		// A hostile message may carry thousands: the first few are enough to audit, the
		// count says the rest.
		dropped := 0
		for _, ri := range pt.RecipientInfos {
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
		return nil, nil, err
	}
	if pt.pkg.SMIMEType != pt.ContentType {
		log.Warn("smime-type label disagrees with the content", "smime_type", pt.Label, "content_type", pt.ContentType)
	}
	if f := pt.env.UnsignedFields(); f != nil {
		log.Info("client envelope fields not passed on", "fields", f)
	}
	var signer *seal.Sender
	if resign != nil {
		if signer, err = resign(); err != nil {
			return nil, nil, err
		}
		log.Info("client signature over the encryption replaced", "layers", len(c.Layers))
	}
	out := &seal.Sealed{}
	for i, pk := range pt.Plan.Packages {
		idx := pt.Packages[i].RecipientInfos
		ris := make([]*cms.RecipientInfo, len(idx))
		for j, n := range idx {
			ris[j] = pt.env.RecipientInfos[n]
		}
		der, err := pt.env.WithRecipients(ris)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to split: %w: %w", split.ErrUnsplittable, err)
		}
		var sp *seal.Package
		if signer != nil {
			sp, err = s.opts.Sealer.NewResigned(pk, pt.pkg.Header, pt.ContentType, der, *signer)
		} else {
			sp, err = seal.NewPassThrough(pk, pt.pkg.Header, pt.ContentType, der)
		}
		if err != nil {
			return nil, nil, fmt.Errorf("failed to split: %w", err)
		}
		out.Packages = append(out.Packages, sp)
	}
	seal.ShareContent(out.Packages)
	return pt.Plan, out, nil
}

// input asks the directory who owns each RecipientInfo: the envelope recipients'
// certificates (valid or not: a certificate that expired since the client encrypted still
// names its owner), the authors' from the directory and the configured chain, and the
// directory's identifier index for each RecipientInfo (one lookup each).
func (s *Splitter) input(env queue.Envelope, h textproto.Header, ris []*cms.RecipientInfo) (split.PassThroughInput, error) {
	cs := s.opts.Policy.CaseSensitiveLocalPart
	in := split.PassThroughInput{Header: h, MailFrom: env.MailFrom, RcptTo: env.RcptTo, Policy: s.opts.Policy,
		PassThrough: s.opts.PassThrough, Owners: map[string]split.KeyOwner{},
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
		valid, rejected, err := s.opts.Directory.LookupContext(context.Background(), addr)
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
		if c := s.opts.SenderCert(a); c != nil {
			addCert(c, split.KeyOwner{Addr: a})
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
		owner, err := s.ownerOf(ri)
		in.RecipientInfos[i] = split.RecipientRef{Key: key, Kind: ri.Kind.String(), ID: desc,
			Ambiguous: errors.Is(err, directory.ErrAmbiguousIdentifier)}
		if err == nil {
			in.RecipientInfos[i].DirOwner = owner
		}
	}
	return in, lookupErr
}

// ownerOf asks the directory's identifier index, for the log line of a dropped RecipientInfo.
func (s *Splitter) ownerOf(ri *cms.RecipientInfo) (string, error) {
	if ri.SubjectKeyID != nil {
		return s.opts.Directory.OwnerBySKI(ri.SubjectKeyID)
	}
	return s.opts.Directory.OwnerByIssuerSerial(ri.Issuer, ri.Serial)
}
