// Package compliance wraps the daemon's queue and front end with DKIM on every package, the
// journal package and the audit trail (README, Compliance). It takes what the daemon built from
// [[dkim]], [journal] and [audit] (Options); it imports no configuration.
//
// Order of work on a message, in the queue.Processor that wraps the pipeline (Processor):
//  1. the pipeline seals its packages (each with its Received trace field);
//  2. each package is DKIM-signed over its final bytes (a queue.Prefixed body);
//  3. with a Journal, the journal package is built from the message as submitted and a report
//     of every package (recipients, RecipientInfo identifiers, SHA-256 of the signed package),
//     sealed for the journal certificates, DKIM-signed, and added as a package of its own; with
//     Journal.Wait every other package waits for it (queue.Wait);
//  4. with an audit trail, each package's body records a `sealed` record once the spool has its
//     bytes.
//
// The `accepted` record is written after the queue committed the message and before the client
// gets its 250 (Spooler); `delivery` records come from the queue's Outcome hook (Outcome).
package compliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"

	"appliance/audit"
	"appliance/dkim"
	"appliance/journal"
	"appliance/queue"
	"appliance/retry"
	"appliance/smtpfront"

	"github.com/emersion/go-message/textproto"
)

// Options are what the daemon built from [[dkim]], [journal] and [audit]; each may be nil.
type Options struct {
	Audit   *audit.Log
	DKIM    *dkim.Signer
	Journal *Journal
	Log     *slog.Logger
	// JournalSealed, when set, is told each journal package's content profile once the spool
	// has its bytes (the metrics' sealed count; the pipeline tells its own packages).
	JournalSealed func(profile string)
}

// Journal is the journal as configured: everything but the sender's signer, which is found per
// message through Keys (the token may come and go).
type Journal struct {
	journal.Journal
	KeyURI string
	Keys   interface {
		Signer(ctx context.Context, keyURI string) (crypto.Signer, error)
	}
	// Wait makes every other package of a message wait until the next hop has accepted the
	// journal package ([journal] policy = "wait"; queue.Wait).
	Wait bool
}

// JournalWaitReason is the DSN's diagnostic for the recipients of a message whose journal
// package failed under policy "wait": it names neither the journal's address nor its recipients.
const JournalWaitReason = "not sent: the message's journal copy could not be delivered"

// Compliance is the set of wrappers; a nil *Compliance, or one without anything configured,
// returns what it wraps unchanged.
type Compliance struct {
	audit   *audit.Log
	dkim    *dkim.Signer
	journal *Journal
	log     *slog.Logger
	// journalSealed is Options.JournalSealed.
	journalSealed func(profile string)
}

// New makes the wrappers of o.
func New(o Options) *Compliance {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Compliance{audit: o.Audit, dkim: o.DKIM, journal: o.Journal, log: o.Log.With("component", "compliance"), journalSealed: o.JournalSealed}
}

// Close closes the audit trail, sealing its last file; the daemon calls it after the queue stopped.
func (c *Compliance) Close() error {
	if c == nil || c.audit == nil {
		return nil
	}
	if err := c.audit.Close(); err != nil {
		c.log.Error("audit trail close failed", "err", err)
		return err
	}
	return nil
}

// Processor wraps the pipeline's queue.Processor (see the package comment).
func (c *Compliance) Processor(next queue.Processor) queue.Processor {
	if c == nil || (c.dkim == nil && c.journal == nil && c.audit == nil) {
		return next
	}
	return compliantProcessor{c: c, next: next}
}

type compliantProcessor struct {
	c    *Compliance
	next queue.Processor
}

func (p compliantProcessor) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	c := p.c
	var orig bytes.Buffer
	if c.journal != nil {
		body = io.TeeReader(body, &orig) // the pipeline reads the whole message
	}
	sealed, err := p.next.Process(ctx, id, env, body)
	if err != nil || sealed == nil {
		return sealed, err
	}
	ris := make([][]string, len(sealed.Packages))
	if c.journal != nil || c.audit != nil {
		for i, pk := range sealed.Packages {
			if ris[i], err = PackageRecipientInfos(pk.Body); err != nil {
				c.log.Warn("package RecipientInfos not readable", "id", id, "package", i, "err", err)
			}
		}
	}
	for i := range sealed.Packages {
		if err := c.sign(id, i, &sealed.Packages[i]); err != nil {
			return nil, err
		}
	}
	if c.journal != nil {
		jp, jris, err := c.journalPackage(ctx, id, env, orig.Bytes(), sealed, ris)
		if err != nil {
			// Never sent without its journal: the message waits, like for any token trouble.
			return nil, retry.Temporary(fmt.Errorf("journal package: %w", err))
		}
		if c.journal.Wait {
			// The decision is data on each package, kept in its spool record: the queue sends
			// none of them before the next hop accepted the journal package, and fails them
			// (a DSN to the sender with JournalWaitReason) if it never does.
			for i := range sealed.Packages {
				sealed.Packages[i].Wait = &queue.Wait{For: []int{len(sealed.Packages)}, Reason: JournalWaitReason}
			}
		}
		sealed.Packages = append(sealed.Packages, jp)
		ris = append(ris, jris)
	}
	if c.audit != nil {
		for i, pk := range sealed.Packages {
			sealed.Packages[i].Body = &auditedBody{inner: pk.Body, log: c.audit, rec: audit.Sealed{
				Message: id, Package: i, Mode: pk.Mode, Profile: pk.Profile,
				Recipients: pk.RcptTo, RecipientInfos: ris[i],
			}}
		}
	}
	return sealed, nil
}

// sign DKIM-signs one package in place; a package no key covers goes unsigned (logged), a
// signing failure defers the message (dkimDeferral).
func (c *Compliance) sign(id string, i int, pk *queue.Package) error {
	if c.dkim == nil {
		return nil
	}
	b, err := signBody(c.dkim, pk.Body)
	switch {
	case errors.Is(err, dkim.ErrNoKey) || errors.Is(err, dkim.ErrUnsignable):
		c.log.Info("package not DKIM-signed", "id", id, "package", i, "reason", err)
	case err != nil:
		return dkimDeferral{fmt.Errorf("DKIM signing of package %d: %w", i, err)}
	default:
		pk.Body = b
	}
	return nil
}

// journalPackage builds and seals the journal package of a message: a transaction of its own
// (the journal sender to the journal address), DKIM-signed like any package.
func (c *Compliance) journalPackage(ctx context.Context, id string, env queue.Envelope, orig []byte, sealed *queue.Sealed, ris [][]string) (queue.Package, []string, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(orig)))
	if err != nil {
		h = textproto.Header{} // the report's kinds then say envelope-only
	}
	rep := journal.NewReport(id, env.ReceivedAt, env.MailFrom, env.AuthUser, h, env.RcptTo)
	for i, pk := range sealed.Packages {
		d := sha256.New()
		if _, err := pk.Body.WriteTo(d); err != nil {
			return queue.Package{}, nil, err
		}
		rep.AddPackage(journal.Package{Recipients: pk.RcptTo, Mode: pk.Mode, Profile: pk.Profile,
			RecipientInfos: ris[i], Digest: audit.Digest([sha256.Size]byte(d.Sum(nil)))})
	}
	for _, r := range sealed.Refused {
		rep.Refuse(r.Recipient, r.Status+" "+r.Reason)
	}
	signer, err := c.journal.Keys.Signer(ctx, c.journal.KeyURI)
	if err != nil {
		return queue.Package{}, nil, fmt.Errorf("the journal sender's key: %w", err)
	}
	j := c.journal.Journal
	j.Sender.Signer = signer
	s, err := j.Seal(ctx, rep, orig)
	if err != nil {
		return queue.Package{}, nil, err
	}
	jris, err := PackageRecipientInfos(s.Body)
	if err != nil {
		return queue.Package{}, nil, err
	}
	// Silent: its failure is never reported to the message's sender (it would name the journal
	// address), even when the journal sender is the message's sender.
	pk := queue.Package{MailFrom: s.MailFrom, RcptTo: s.RcptTo, Body: s.Body, Silent: true}
	pk.Mode, pk.Profile = s.Body.Kind()
	if err := c.sign(id, len(sealed.Packages), &pk); err != nil {
		return queue.Package{}, nil, err
	}
	if c.journalSealed != nil {
		// After signing, so the count is the spool's write, not the signer's.
		profile := pk.Profile
		pk.Body = queue.NewPrefixed("", pk.Body, func() { c.journalSealed(profile) })
	}
	c.log.Info("journal package", "id", id, "package", len(sealed.Packages), "packages_reported", len(rep.Packages))
	return pk, jris, nil
}

// signBody DKIM-signs a package given as the io.WriterTo the queue spools: the package is
// written once to be signed, and the result writes the DKIM-Signature fields and then the
// package again (which must write the same bytes).
func signBody(s *dkim.Signer, pkg io.WriterTo) (io.WriterTo, error) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := pkg.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	field, err := s.Sign(pr)
	pr.CloseWithError(errors.New("dkim: signing stopped"))
	<-done // the first WriteTo is over before anyone calls the second
	if err != nil {
		return nil, err
	}
	return queue.NewPrefixed(field, pkg, nil), nil
}

// splitBody is body's head and shared part when it offers them (queue.SharedBody), else body.
func splitBody(body io.WriterTo) (head, shared io.WriterTo) {
	if sb, ok := body.(queue.SharedBody); ok {
		return sb.SplitBody()
	}
	return body, nil
}

// auditedBody writes a package to the spool and then its `sealed` record, with the SHA-256 of
// the bytes written: the record is on disk before the package can be delivered. A trail that
// cannot be written fails the spool write, so the message is sealed again later.
type auditedBody struct {
	inner io.WriterTo
	log   *audit.Log
	rec   audit.Sealed
}

func (b *auditedBody) WriteTo(w io.Writer) (int64, error) {
	h := sha256.New()
	n, err := b.inner.WriteTo(io.MultiWriter(w, h))
	if err != nil {
		return n, err
	}
	return n, b.record(h)
}

func (b *auditedBody) record(h hash.Hash) error {
	r := b.rec
	r.Digest = [sha256.Size]byte(h.Sum(nil))
	if err := b.log.Sealed(r); err != nil {
		return fmt.Errorf("audit trail: %w", err)
	}
	return nil
}

// SplitBody keeps the package's shared part spooled once. The record still carries the digest
// of the whole package: when the head has been written, the shared part is read once more into
// the hash (only with an audit trail configured).
func (b *auditedBody) SplitBody() (head, shared io.WriterTo) {
	h, sh := splitBody(b.inner)
	if sh == nil {
		return b, nil
	}
	return &auditedHead{body: b, head: h, shared: sh}, sh
}

type auditedHead struct {
	body         *auditedBody
	head, shared io.WriterTo
}

func (a *auditedHead) WriteTo(w io.Writer) (int64, error) {
	h := sha256.New()
	n, err := a.head.WriteTo(io.MultiWriter(w, h))
	if err != nil {
		return n, err
	}
	if _, err := a.shared.WriteTo(h); err != nil {
		return n, err
	}
	return n, a.body.record(h)
}

// Spooler records an `accepted` record for each message the queue committed, before the
// client's 250; a trail that cannot be written answers 451 (the message is in the spool and is
// sent, but the client is told to try again: a duplicate rather than mail without its record).
func (c *Compliance) Spooler(next smtpfront.Spooler) smtpfront.Spooler {
	if c == nil || c.audit == nil {
		return next
	}
	return complianceSpool{next: next, log: c.audit}
}

type complianceSpool struct {
	next smtpfront.Spooler
	log  *audit.Log
}

func (s complianceSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	h := &countingHash{Hash: sha256.New()}
	id, err := s.next.Accept(ctx, env, io.TeeReader(body, h))
	if err != nil {
		return id, err
	}
	err = s.log.Accepted(audit.Accepted{Message: id, From: env.MailFrom, AuthUser: env.AuthUser,
		Recipients: env.RcptTo, Size: h.n, Digest: [sha256.Size]byte(h.Sum(nil))})
	if err != nil {
		return "", fmt.Errorf("%w: audit trail: %w", smtpfront.ErrTemporary, err)
	}
	return id, nil
}

type countingHash struct {
	hash.Hash
	n int64
}

func (c *countingHash) Write(b []byte) (int, error) {
	c.n += int64(len(b))
	return c.Hash.Write(b)
}

// Outcome is the queue's Outcome hook: one `delivery` record per recipient per attempt; nil
// without a trail.
func (c *Compliance) Outcome() func(queue.Outcome) {
	if c == nil || c.audit == nil {
		return nil
	}
	return func(o queue.Outcome) {
		d := audit.Delivery{Message: o.Message, Package: o.Package, Recipient: o.Recipient, Outcome: audit.Deferred}
		switch o.State {
		case "delivered":
			d.Outcome = audit.Delivered
		case "failed":
			d.Outcome = audit.Bounced
		}
		if o.Err != nil {
			d.Reply = o.Err.Error()
		}
		if err := c.audit.Delivery(d); err != nil {
			c.log.Error("audit record of a delivery failed", "id", o.Message, "package", o.Package, "err", err)
		}
	}
}

// dkimDeferral makes a signing failure temporary for the queue: the message waits for the key.
type dkimDeferral struct{ error }

func (e dkimDeferral) Temporary() bool { return true }
func (e dkimDeferral) Unwrap() error   { return e.error }
