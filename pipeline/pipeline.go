// Package pipeline is the work done for one spooled message: classify it (smime.Classify), then
// dispatch it to its mode: plain mail is planned by split and sealed by seal, client-encrypted
// mail is split without decrypting (package passthrough), a post to a list goes to the list agent
// (lists). It asks the directory for every recipient's certificates, and tells an observer what
// it did (Events).
//
// It implements queue.Processor for the daemon and serves `appliance seal`, so both produce the
// same packages for the same input. It also answers the front end's questions at MAIL, RCPT and
// end of DATA.
package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"appliance/cms"
	"appliance/directory"
	"appliance/lists"
	"appliance/passthrough"
	"appliance/queue"
	"appliance/retry"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// Sender is one configured signing identity.
type Sender struct {
	Address string
	KeyURI  string              // PKCS#11 URI of the signing key
	Chain   []*x509.Certificate // leaf first
	PSS     bool
}

// Token is what the pipeline needs of the HSM: the list agent's signing (lists.Token) and
// content keys.
type Token interface {
	lists.Token
	NewContentKey(ctx context.Context) (cms.ContentKey, error)
}

// Options wire a Pipeline.
type Options struct {
	Directory *directory.Directory
	Token     Token
	Senders   []Sender
	Policy    split.Policy
	// SKI, when set, names the recipients whose RecipientInfos use subjectKeyIdentifier ids.
	SKI func(owner string) bool
	// Hostname names this relay in the Received field each package gets.
	Hostname string
	// MaxMessageBytes bounds what Process reads (0: no bound): a message over it by more than
	// 1 MB is refused (queue.ErrMessageTooBig), not sealed cut short.
	MaxMessageBytes int64
	// Limits are the normalisation's (smime.Normalize), the SMTP front's.
	Limits smime.Limits
	Now    func() time.Time
	// PassThrough shapes how client-encrypted messages are split (README, Client-encrypted mail).
	PassThrough split.PassThroughPolicy
	// Events are told what the pipeline did; the zero value tells nobody.
	Events Events
	// Budget bounds the bytes of messages held whole in memory at once, by the end-of-DATA
	// check (CheckSpooled) and sealing (Process) together; nil does not bound.
	Budget *Budget
	// Logger gets one line per sealed message, one audit line per package (its envelope
	// recipients and the owners of its RecipientInfos) and one per certificate found unusable;
	// never content. nil discards.
	Logger *slog.Logger
}

// Pipeline plans and seals messages. It is safe for concurrent use.
type Pipeline struct {
	opts        Options
	senders     map[string]Sender
	lists       *lists.Agent
	passThrough *passthrough.Splitter
	sealer      *seal.Sealer
}

// New checks the options and builds a Pipeline.
func New(o Options) (*Pipeline, error) {
	if o.Directory == nil {
		return nil, errors.New("pipeline: a directory is required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.PassThrough.Validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{opts: o, senders: map[string]Sender{}}
	for _, s := range o.Senders {
		if len(s.Chain) == 0 {
			return nil, fmt.Errorf("pipeline: sender %q has no certificate", s.Address)
		}
		key, err := split.Normalize(s.Address, o.Policy.CaseSensitiveLocalPart)
		if err != nil {
			return nil, fmt.Errorf("pipeline: sender %q: %w", s.Address, err)
		}
		p.senders[key] = s
	}
	if o.Token == nil {
		// Planning only (inspect): sealing reports the missing token.
		o.Token = noToken{}
		p.opts.Token = o.Token
	}
	p.sealer = &seal.Sealer{NewKey: o.Token.NewContentKey, OAEPHash: o.Token.OAEPHash, Now: o.Now, SKI: o.SKI}
	p.passThrough = passthrough.New(passthrough.Options{Directory: o.Directory, Sealer: p.sealer, Policy: o.Policy,
		PassThrough: o.PassThrough, Logger: o.Logger, SenderCert: func(a string) *x509.Certificate {
			if s, ok := p.SenderFor(a); ok {
				return s.Chain[0]
			}
			return nil
		}})
	p.lists = lists.New(lists.Options{Directory: o.Directory, Token: o.Token, Sealer: p.sealer, Policy: o.Policy,
		Hostname: o.Hostname, Now: o.Now, Logger: o.Logger, Expanded: o.Events.ListExpanded,
		IsSender: func(n string) bool { _, ok := p.senders[n]; return ok }})
	return p, nil
}

// SetLists makes the pipeline expand lists (lists.Agent.Set); tok unwraps content keys for
// mail encrypted to a list.
func (p *Pipeline) SetLists(l []lists.List, tok lists.ListToken) error { return p.lists.Set(l, tok) }

// Reload reads every list's members file again (on SIGHUP).
func (p *Pipeline) Reload() error { return p.lists.Reload() }

// IsList reports whether addr is a mail list the appliance expands.
func (p *Pipeline) IsList(addr string) bool { return p.lists.IsList(addr) }

// CheckPoster refuses a sender the posting rule of list does not admit.
func (p *Pipeline) CheckPoster(ctx context.Context, list, mailFrom string) error {
	return p.lists.CheckPoster(ctx, list, mailFrom)
}

// ErrUnknownSender reports a MAIL FROM that is not a configured sender.
var ErrUnknownSender = errors.New("sender is not configured")

// ErrNoCertificate reports a recipient with no usable certificate under missing_cert = reject.
var ErrNoCertificate = errors.New("recipient has no valid encryption certificate")

// SenderFor returns the configured sender for an address.
func (p *Pipeline) SenderFor(addr string) (Sender, bool) {
	key, err := split.Normalize(addr, p.opts.Policy.CaseSensitiveLocalPart)
	if err != nil {
		return Sender{}, false
	}
	s, ok := p.senders[key]
	return s, ok
}

// CheckSender refuses a MAIL FROM (or header From/Sender) that is not a configured sender: the
// appliance signs only as the identities it holds keys for.
func (p *Pipeline) CheckSender(_ context.Context, addr string) error {
	if _, ok := p.SenderFor(addr); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownSender, addr)
	}
	return nil
}

// CheckRecipient refuses, under missing_cert = reject, a recipient without a valid certificate,
// so the client learns at RCPT time rather than from a bounce.
func (p *Pipeline) CheckRecipient(ctx context.Context, rcpt string) error {
	if p.lists.IsList(rcpt) || p.opts.Policy.MissingCert != split.Reject {
		return nil
	}
	valid, _, err := p.opts.Directory.LookupContext(ctx, rcpt)
	if errors.Is(err, directory.ErrUnavailable) {
		return nil // cannot tell now: accept, sealing defers until the directory answers
	}
	if len(valid) == 0 {
		return fmt.Errorf("%w: %q", ErrNoCertificate, rcpt)
	}
	return nil
}

// Result is a sealed message with the plan that shaped it.
type Result struct {
	Plan   *split.Plan
	Sealed *seal.Sealed
	// Certs maps every certificate ID in the plan to its certificate.
	Certs map[string]*x509.Certificate
	// Unusable are the recipients' certificates the directory refused (expired, no
	// keyEncipherment, EC, untrusted ...), each error naming the certificate.
	Unusable []directory.Rejection
}

var (
	// ErrUnaccountable reports a message the classifier refused: it holds CMS the appliance
	// cannot account for (an envelope that is not the whole message, an unknown or mislabelled
	// CMS part, two Content-Type fields ...) or a structure it cannot read unambiguously.
	// Permanent; the front end answers 554 5.7.1 (550 5.6.0 for a malformed structure).
	ErrUnaccountable = errors.New("message holds content the appliance cannot account for")
	// ErrSignedOverEncrypted reports an envelope under a signature: the signature covers every
	// RecipientInfo, so splitting it for Bcc recipients would break it. Permanent; 554 5.7.1.
	ErrSignedOverEncrypted = errors.New("message is signed over its encryption")
)

// RefusedError is a message refused by its classification, with the classifier's reason (it
// describes the structure, never an address). It wraps ErrUnaccountable or
// ErrSignedOverEncrypted.
type RefusedError struct {
	Reason string
	// Malformed is set when the structure does not parse (as opposed to holding what the
	// appliance must not pass on).
	Malformed bool
	class     smime.Class
}

func (e *RefusedError) Error() string { return "message refused: " + e.Reason }

func (e *RefusedError) Unwrap() error {
	if e.class == smime.SignedOverEncrypted {
		return ErrSignedOverEncrypted
	}
	return ErrUnaccountable
}

// refusal is the error for a classification the appliance cannot send on as is: nil for plain
// and client-encrypted messages. A message signed over its encryption may go to lists only,
// which unwrap it with their own key (lists says whether every recipient is one), unless
// policy says to split it and sign it again.
func (p *Pipeline) refusal(c *smime.Classification, lists bool) error {
	switch {
	case c.Class == smime.Refused:
		return &RefusedError{Reason: c.Reason, Malformed: c.Malformed, class: c.Class}
	case c.Class == smime.SignedOverEncrypted && !lists && p.opts.PassThrough.SignedOverEncrypted != split.ResignSignedOverEncrypted:
		return &RefusedError{Reason: c.Reason, class: c.Class}
	}
	return nil
}

// Seal plans and seals one message: msg is the submitted RFC 5322 message, env its envelope.
// The message is classified first (smime.Classify): plain content is sealed, a client's
// envelope is split without decrypting, and anything else is refused.
func (p *Pipeline) Seal(ctx context.Context, id string, env queue.Envelope, msg []byte) (*Result, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return nil, fmt.Errorf("failed to read message header: %w", err)
	}
	return p.seal(ctx, id, env, msg, h, smime.Classify(msg))
}

// seal is Seal of a message whose header h was read already.
func (p *Pipeline) seal(ctx context.Context, id string, env queue.Envelope, msg []byte, h textproto.Header, c *smime.Classification) (*Result, error) {
	if err := p.refusal(c, false); err != nil {
		p.opts.Logger.Info("message refused", "id", id, "class", c.Class.String(), "reason", c.Reason)
		return nil, err
	}
	if c.Class == smime.ClientEncrypted || c.Class == smime.SignedOverEncrypted {
		return p.splitClientEncrypted(ctx, id, env, msg, c)
	}
	return p.sealPlain(ctx, env, msg, h)
}

// sealPlain plans and seals a message whose content the appliance can read: sign once, encrypt
// once per profile, wrap once per certificate.
func (p *Pipeline) sealPlain(ctx context.Context, env queue.Envelope, msg []byte, h textproto.Header) (*Result, error) {
	sender, ok := p.SenderFor(env.MailFrom)
	if !ok {
		return nil, fmt.Errorf("failed to seal: %w: %q", ErrUnknownSender, env.MailFrom)
	}

	certs := map[string]*x509.Certificate{}
	var unusable []directory.Rejection
	in := split.Input{Header: h, MailFrom: env.MailFrom, RcptTo: env.RcptTo, Certs: map[string][]split.Cert{}, Policy: p.opts.Policy}
	for _, rcpt := range env.RcptTo {
		key, err := split.Normalize(rcpt, p.opts.Policy.CaseSensitiveLocalPart)
		if err != nil {
			continue // split refuses it with a reason
		}
		valid, rejected, err := p.opts.Directory.LookupContext(ctx, rcpt)
		if err != nil {
			return nil, retry.Temporary(fmt.Errorf("failed to look up certificates of %q: %w", rcpt, err))
		}
		unusable = append(unusable, rejected...)
		// A [[policy.domain]] profile pins; otherwise what was learnt about the recipient wins.
		_, pinned := p.opts.Policy.DomainProfiles[key[strings.LastIndexByte(key, '@')+1:]]
		for _, e := range valid {
			c := split.Cert{ID: e.ID, Owner: key, NotBefore: e.Cert.NotBefore, KeyAgree: cms.IsKeyAgree(e.Cert)}
			if !pinned {
				c.Profile = e.Profile
			}
			in.Certs[key] = append(in.Certs[key], c)
			certs[e.ID] = e.Cert
		}
	}
	if p.opts.Policy.SelfCopy {
		leaf := sender.Chain[0]
		if err := p.opts.Directory.ValidateFor(leaf, sender.Address, p.opts.Now()); err == nil {
			owner, _ := split.Normalize(sender.Address, p.opts.Policy.CaseSensitiveLocalPart)
			id := directory.CertID(leaf)
			in.SenderCerts = []split.Cert{{ID: id, Owner: owner, NotBefore: leaf.NotBefore, KeyAgree: cms.IsKeyAgree(leaf)}}
			certs[id] = leaf
		}
	}

	plan, err := split.Make(in)
	if err != nil {
		return nil, fmt.Errorf("failed to plan: %w", err)
	}
	origs, err := split.Originators(h)
	for _, a := range origs {
		if err == nil {
			err = p.CheckSender(ctx, a)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("failed to seal: header originator: %w", err)
	}
	signer, err := p.opts.Token.Signer(ctx, sender.KeyURI)
	if err != nil {
		return nil, fmt.Errorf("failed to find the signing key of %q: %w", sender.Address, err)
	}
	sealed, err := p.sealer.Seal(ctx, msg, plan, seal.Sender{Signer: signer, Chain: sender.Chain, PSS: sender.PSS}, certs)
	if err != nil {
		return nil, err
	}
	return &Result{Plan: plan, Sealed: sealed, Certs: certs, Unusable: unusable}, nil
}

// checkCost is how many times its size a message costs the budget while the check at end of
// DATA holds it: read whole, and its parts copied and decoded by the classifier.
const checkCost = 3

// CheckSpooled is CheckMessage for a message the front end staged in the spool (msg reads it
// from there), under the budget. It returns the class to keep with the message when it is
// accepted (queue.Envelope.Class: plain or client-encrypted, "" for anything else), so that
// Process does not classify it again.
func (p *Pipeline) CheckSpooled(ctx context.Context, env queue.Envelope, msg *io.SectionReader) (string, error) {
	// A client's envelope: its RecipientInfos decide, the ciphertext after them is not read
	// until the pipeline splits it. What is decoded of it (at most smime.MaxEnvelopeHead: a
	// hostile message may carry thousands of RecipientInfos) counts against the budget.
	release, err := p.opts.Budget.Acquire(ctx, min(msg.Size(), smime.MaxEnvelopeHead))
	if err != nil {
		return "", retry.Temporary(fmt.Errorf("failed to wait for memory: %w", err))
	}
	if c, header, ok := smime.ClassifyHead(msg, msg.Size()); ok {
		defer release()
		if err := p.checkClassified(ctx, env, header, c); err != nil {
			return "", err
		}
		return c.Class.String(), nil
	}
	release()
	release, err = p.opts.Budget.Acquire(ctx, cost(msg.Size(), checkCost))
	if err != nil {
		return "", retry.Temporary(fmt.Errorf("failed to wait for memory: %w", err))
	}
	defer release()
	b := make([]byte, msg.Size())
	if _, err := msg.ReadAt(b, 0); err != nil && !(errors.Is(err, io.EOF) && len(b) == 0) {
		return "", retry.Temporary(fmt.Errorf("failed to read staged message: %w", err))
	}
	c := smime.Classify(b)
	if err := p.checkClassified(ctx, env, b, c); err != nil {
		return "", err
	}
	if c.Class == smime.Plain || c.Class == smime.ClientEncrypted {
		return c.Class.String(), nil
	}
	return "", nil
}

// Process implements queue.Processor: list addresses among the recipients are expanded by the
// mail list agent, every other recipient is planned and sealed together. A permanent failure is
// told to Events.Refused (StageSeal).
func (p *Pipeline) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	out, err := p.process(ctx, id, env, body)
	if err != nil && !retry.IsTemporary(err, false) {
		p.refused(StageSeal, err)
	}
	return out, err
}

// sealCost is how many times its size a message costs the budget while it is processed: read
// whole, normalised, classified (a part decoded), signed and encrypted (the signed entity, the
// ciphertext and its base64), measured on the 10 MB shapes of bench/run.sh.
const sealCost = 6

func (p *Pipeline) process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	// A body whose size is not told (a wrapper's reader) costs as much as the largest
	// message may.
	size, known := int64(-1), false
	if s, ok := body.(interface{ Size() int64 }); ok {
		size, known = s.Size(), true
	} else if p.opts.MaxMessageBytes > 0 {
		size = p.opts.MaxMessageBytes
	}
	release, err := p.opts.Budget.Acquire(ctx, cost(size, sealCost))
	if err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to wait for memory: %w", err))
	}
	h := &hold{release: release}
	out, err := p.processWhole(ctx, id, env, body, size, known, h)
	if err != nil || out == nil {
		release()
		return out, err
	}
	h.finish(out)
	return out, nil
}

// hold keeps the budget the sealing took until the queue has written every package to the
// spool: until then the packages hold the message's ciphertext (and the queue the base64 of it
// it is writing). A package written before (a DKIM signature or the journal's digest over it)
// gives its share back then; packages the queue drops unwritten (a commit that failed) give it
// back when they are collected.
type hold struct {
	mu       sync.Mutex
	pending  int
	finished bool
	release  func()
}

// add counts a package and returns what its body calls once written.
func (h *hold) add() func() {
	h.mu.Lock()
	h.pending++
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		h.pending--
		done := h.finished && h.pending == 0
		h.mu.Unlock()
		if done {
			h.release()
		}
	}
}

// finish is called once every package of out was added.
func (h *hold) finish(out *queue.Sealed) {
	h.mu.Lock()
	h.finished = true
	done := h.pending == 0
	h.mu.Unlock()
	if done {
		h.release()
		return
	}
	runtime.AddCleanup(out, func(release func()) { release() }, h.release)
}

func (p *Pipeline) processWhole(ctx context.Context, id string, env queue.Envelope, body io.Reader, size int64, known bool, h *hold) (*queue.Sealed, error) {
	lists, rest := p.lists.Split(env)
	if ra, ok := body.(io.ReaderAt); ok && known && len(lists) == 0 && len(rest.RcptTo) > 0 && env.Class == smime.ClientEncrypted.String() {
		streamed, err := p.splitStreamed(ctx, id, rest, body, size, h)
		if streamed != nil || err != nil {
			return streamed, err
		}
		// Not what the check at end of DATA said: read whole and classified in full.
		body = io.NewSectionReader(ra, 0, size)
	}
	src, r, limited := p.spooled(body)
	// Normalised as it is read (smime.Normalize, without a second copy of the message).
	var room []byte
	if known {
		// Read in place, not regrown; made, not Grown (smime.Buffer).
		room = smime.Buffer(int(size) + int(size)/64 + bytes.MinRead)
	}
	buf := bytes.NewBuffer(room)
	_, err := buf.ReadFrom(smime.NewNormalizer(r, p.opts.Limits))
	msg := buf.Bytes()
	if src.err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to read spooled message: %w", src.err))
	}
	if limited != nil && limited.N == 0 {
		// Sealing what was read would send the message cut short: refused whole instead.
		return nil, fmt.Errorf("failed to read message: %w: more than %d bytes", queue.ErrMessageTooBig, p.opts.MaxMessageBytes+1<<20)
	}
	var header textproto.Header // read once, here: the plan and the seal take it as it is
	if err == nil {
		header, err = smime.CheckHeader(smime.HeaderBlock(msg), p.opts.Limits)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read message: %w", err)
	}
	out := &queue.Sealed{}
	// Classified before anything else: nothing is expanded or sealed from a message refused.
	// What the check at end of DATA found is not looked for again.
	c := smime.ClassifyAs(msg, env.Class)
	if f := p.opts.Events.Classified; f != nil {
		f(c.Class.String())
	}
	if err := p.refusal(c, len(rest.RcptTo) == 0); err != nil {
		p.opts.Logger.Info("message refused", "id", id, "class", c.Class.String(), "reason", c.Reason)
		return nil, err
	}
	for _, l := range lists {
		s, err := p.lists.Expand(ctx, id, env, l, msg)
		if err != nil {
			return nil, err
		}
		for _, pk := range s.Packages {
			out.Packages = append(out.Packages, p.spool(pk, "", h))
		}
		out.Refused = append(out.Refused, s.Refused...)
	}
	if len(rest.RcptTo) == 0 {
		return out, nil
	}
	return p.sealed(ctx, id, rest, msg, len(msg), header, c, out, h)
}

// sealed seals a message already read and classified (c) for env, its recipients that are not
// lists, and spools its packages after those of out.
func (p *Pipeline) sealed(ctx context.Context, id string, env queue.Envelope, msg []byte, size int, header textproto.Header, c *smime.Classification, out *queue.Sealed, h *hold) (*queue.Sealed, error) {
	start := time.Now()
	res, err := p.seal(ctx, id, env, msg, header, c)
	if err != nil {
		return nil, err
	}
	// The info lines cost their arguments even when the level drops them: built only when
	// they are written.
	log := p.opts.Logger
	info := log.Enabled(ctx, slog.LevelInfo)
	if info || len(res.Unusable) > 0 || len(res.Plan.Refused) > 0 {
		log = log.With("id", id)
	}
	for _, r := range res.Unusable {
		log.Warn("certificate not usable", "err", r.Err)
	}
	if info {
		log.Info("sealed", "packages", len(res.Sealed.Packages), "profiles", res.Plan.Profiles,
			"refused", len(res.Plan.Refused), "bytes", size, "duration", time.Since(start))
	}
	for i, pk := range res.Sealed.Packages {
		if info {
			owners := make([]string, 0, len(pk.Certs))
			for _, c := range pk.Certs {
				owners = append(owners, c.Owner)
			}
			log.Info("package", "package", i, "rcpt_to", pk.Recipients, "recipientinfo_owners", owners,
				"profile", pk.Profile, "hidden", pk.Hidden, "dropped_fields", pk.Edits.Dropped)
		}
		qp := queue.Package{MailFrom: env.MailFrom, RcptTo: pk.Recipients, Body: pk}
		qp.Mode, qp.Profile = pk.Kind()
		trace := split.Trace{Helo: env.Helo, ClientAddr: env.ClientAddr, By: p.opts.Hostname, ID: id, For: pk.ReceivedFor, At: p.opts.Now()}
		out.Packages = append(out.Packages, p.spool(qp, trace.Field(), h))
	}
	for _, r := range res.Plan.Refused {
		log.Info("recipient refused", "rcpt", r.Recipient, "status", r.Enhanced, "reason", r.Reason)
		out.Refused = append(out.Refused, queue.Refusal{Recipient: r.Recipient, Status: r.Enhanced, Reason: r.Reason})
	}
	return out, nil
}

// splitStreamed splits a client-encrypted message (as the check at end of DATA classified it)
// without holding it whole: the normalised header is read, then the body is decoded into the
// envelope's DER as it is read (smime.EnvelopeAtTopStream), so of a 10 MB message only the DER
// is in memory, not also its 14 MB of base64. It returns nil and no error when the message does
// not read as one clean base64 envelope under a header the normalisation accepts, or is cut by
// the size bound: the caller then reads it whole and decides as for any other message.
func (p *Pipeline) splitStreamed(ctx context.Context, id string, env queue.Envelope, body io.Reader, size int64, h *hold) (*queue.Sealed, error) {
	src, r, limited := p.spooled(body)
	br := bufio.NewReader(smime.NewNormalizer(r, p.opts.Limits))
	raw, err := smime.ReadHeaderBlock(br, p.opts.Limits)
	var header textproto.Header
	var c *smime.Classification
	if err == nil {
		if header, err = smime.CheckHeader(raw, p.opts.Limits); err == nil {
			c = smime.EnvelopeAtTopStream(header, br, size-int64(len(raw)))
		}
	}
	if src.err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to read spooled message: %w", src.err))
	}
	if c == nil || (limited != nil && limited.N == 0) {
		return nil, nil
	}
	if f := p.opts.Events.Classified; f != nil {
		f(c.Class.String())
	}
	// p.seal refuses what the classifier refuses, as for a message read whole.
	return p.sealed(ctx, id, env, raw, int(size), header, c, &queue.Sealed{}, h)
}

// spooled is how a spooled body is read: r reads it, src keeps the spool's read error, and
// limited (when the size is bounded) is at 0 once the bound was passed.
func (p *Pipeline) spooled(body io.Reader) (src *readErr, r io.Reader, limited *io.LimitedReader) {
	src = &readErr{r: body}
	r = src
	if p.opts.MaxMessageBytes > 0 {
		// One byte past the bound tells a message the bound cut from one that fits it.
		limited = &io.LimitedReader{R: r, N: p.opts.MaxMessageBytes + 1<<20 + 1}
		r = limited
	}
	return src, r, limited
}

// readErr remembers the error of the reader under the normaliser, so that a spool that cannot
// be read (retried) is told apart from a message the normaliser refuses (permanent).
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

// spool makes pk's body write trace (a Received field) first and, once it is written, tell
// Events.Sealed and give back its share of the budget h holds (DKIM signs the written form, so
// it may be written more than once).
func (p *Pipeline) spool(pk queue.Package, trace string, h *hold) queue.Package {
	held := h.add()
	written := held
	if sealed := p.opts.Events.Sealed; sealed != nil {
		written = func() { sealed(pk.Mode, pk.Profile); held() }
	}
	pk.Body = queue.NewPrefixed(trace, pk.Body, written)
	return pk
}

// Sealer is the pipeline's sealer (the token's content keys and OAEP hash): the journal package
// is sealed with it.
func (p *Pipeline) Sealer() *seal.Sealer { return p.sealer }

// ErrNoToken reports sealing by a pipeline made without a token, for planning only.
var ErrNoToken = errors.New("pipeline: no HSM token (planning only)")

type noToken struct{}

func (noToken) Signer(context.Context, string) (crypto.Signer, error) { return nil, ErrNoToken }
func (noToken) NewContentKey(context.Context) (cms.ContentKey, error) { return nil, ErrNoToken }
func (noToken) OAEPHash() crypto.Hash                                 { return 0 }
