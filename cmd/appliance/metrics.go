package main

// Metrics for `serve`: wrappers around the interfaces where packages meet (queue.Processor,
// queue.Deliverer, smtpfront.Spooler and Policy, pipeline.Token and what it hands out), so that
// no core package imports metrics. With [metrics] off the observer is nil and every wrap returns
// its argument unchanged.

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/client_golang/prometheus"

	"appliance/cms"
	"appliance/config"
	"appliance/directory"
	"appliance/metrics"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/smtpfront"
)

// observer owns the daemon's metrics and readiness checks.
type observer struct {
	m   *metrics.Metrics
	cfg *config.Config
	hop *metrics.NextHop
	srv *metrics.Server
}

// newObserver returns nil when [metrics] is off.
func newObserver(cfg *config.Config) *observer {
	if !cfg.Metrics.Enabled() {
		return nil
	}
	return &observer{m: metrics.New(), cfg: cfg, hop: &metrics.NextHop{Addr: cfg.Relay.NextHop}}
}

// start registers the queue's gauges and opens the listener; hsmHealthy is the token
// supervisor's verdict (nil while the token is logged in and answering).
func (o *observer) start(q *queue.Queue, hsmHealthy func() error, log *slog.Logger) error {
	if o == nil {
		return nil
	}
	o.m.ObserveQueue(func() metrics.QueueStats {
		s := q.Stats()
		return metrics.QueueStats{Messages: s.Messages, Received: s.Received, SealDeferred: s.SealDeferred,
			Pending: s.Pending, Deferred: s.Deferred, Delivered: s.Delivered, Failed: s.Failed, DSNs: s.DSNs}
	})
	checks := []metrics.Check{
		{Name: "hsm", Probe: func(context.Context) error { return hsmHealthy() }},
		{Name: "spool", Probe: func(context.Context) error { return spoolWritable(o.cfg.Spool.Dir) }},
		{Name: "next_hop", Probe: o.hop.Probe},
	}
	srv, err := o.m.Serve(o.cfg.Metrics.Listen, checks)
	if err != nil {
		return err
	}
	o.srv = srv
	log.Info("metrics listening", "component", "metrics", "listen", srv.Addr())
	return nil
}

// front registers the front end's connection and shedding figures.
func (o *observer) front(srv *smtpfront.Server) {
	if o == nil {
		return
	}
	o.m.ObserveFront(func() metrics.FrontStats {
		s := srv.Stats()
		return metrics.FrontStats{Open: s.Open, Trusted: s.Trusted, Stressed: s.Stressed, StressEntered: s.StressEntered,
			RefusedTotal: s.RefusedTotal, RefusedPerIP: s.RefusedPerIP, RateClosed: s.RateClosed, Shed: s.Shed}
	})
}

func (o *observer) Close() {
	if o != nil && o.srv != nil {
		o.srv.Close()
	}
}

// spoolWritable writes, syncs and removes a file where the queue writes its own temp files.
func spoolWritable(dir string) error {
	tmp := filepath.Join(dir, "tmp")
	if _, err := os.Stat(tmp); err != nil {
		tmp = dir
	}
	f, err := os.CreateTemp(tmp, "readyz-*")
	if err != nil {
		return fmt.Errorf("failed to create a file in the spool: %w", err)
	}
	defer os.Remove(f.Name())
	_, werr := f.Write([]byte("ok\n"))
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return fmt.Errorf("failed to write to the spool: %w", err)
	}
	return nil
}

// wrapToken instruments the pipeline's token; it has the shape of openParts' tokenWrap option.
func (o *observer) wrapToken(t pipeline.Token) pipeline.Token {
	if o == nil {
		return t
	}
	return meteredToken{Token: t, m: o.m}
}

type meteredToken struct {
	pipeline.Token
	m *metrics.Metrics
}

func (t meteredToken) Signer(ctx context.Context, uri string) (crypto.Signer, error) {
	start := time.Now()
	s, err := t.Token.Signer(ctx, uri)
	t.m.HSM(metrics.OpFindKey, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return t.m.Signer(s), nil
}

func (t meteredToken) NewContentKey(ctx context.Context) (cms.ContentKey, error) {
	start := time.Now()
	k, err := t.Token.NewContentKey(ctx)
	t.m.HSM(metrics.OpGenerateCEK, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return t.m.ContentKey(k), nil
}

// processor counts the packages each sealed message produced, by mode and profile, when they
// are written to the spool (so a message sealed again after a crash counts again: it was).
func (o *observer) processor(p queue.Processor) queue.Processor {
	if o == nil {
		return p
	}
	return meteredProcessor{next: p, m: o.m}
}

type meteredProcessor struct {
	next queue.Processor
	m    *metrics.Metrics
}

func (p meteredProcessor) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	s, err := p.next.Process(ctx, id, env, body)
	if err != nil || s == nil {
		return s, err
	}
	for i, pk := range s.Packages {
		s.Packages[i].Body = &countedBody{next: pk.Body, m: p.m, mode: pk.Mode, profile: pk.Profile}
	}
	return s, nil
}

// countedBody counts its package by the mode and profile the pipeline recorded for it, once it
// is written.
type countedBody struct {
	next          io.WriterTo
	m             *metrics.Metrics
	mode, profile string
}

func (b *countedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := b.next.WriteTo(w)
	if err == nil {
		b.m.Sealed(packageKind(b.mode, b.profile))
	}
	return n, err
}

// SplitBody keeps the package's shared part (queue.SharedBody) visible through the count, which
// then happens when its head is written.
func (b *countedBody) SplitBody() (head, shared io.WriterTo) {
	sb, ok := b.next.(queue.SharedBody)
	if !ok {
		return b, nil
	}
	h, sh := sb.SplitBody()
	if sh == nil {
		return b, nil
	}
	return &countedBody{next: h, m: b.m, mode: b.mode, profile: b.profile}, sh
}

// packageKind is what metrics count for a package's recorded mode and profile: what the
// pipeline did not label is "other".
func packageKind(mode, profile string) (string, string) {
	switch {
	case mode == seal.ModeSigned && profile == seal.ProfileNone:
		return metrics.ModeSigned, metrics.ProfileNone
	case (mode == seal.ModeEncrypted || mode == seal.ModePassThrough) &&
		(profile == seal.ProfileCompat || profile == seal.ProfileModern):
		return mode, profile
	}
	return metrics.ModeOther, metrics.ProfileNone
}

// deliverer counts transactions with the next hop and tells the readiness check about them.
func (o *observer) deliverer(d queue.Deliverer) queue.Deliverer {
	if o == nil {
		return d
	}
	return meteredDeliverer{next: d, m: o.m, hop: o.hop}
}

type meteredDeliverer struct {
	next queue.Deliverer
	m    *metrics.Metrics
	hop  *metrics.NextHop
}

func (d meteredDeliverer) Deliver(ctx context.Context, mailFrom string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	res, err := d.next.Deliver(ctx, mailFrom, rcptTo, body)
	d.hop.Record(err)
	d.m.Delivery(deliveryResult(res, err))
	return res, err
}

func deliveryResult(res []queue.RcptResult, err error) string {
	if err != nil {
		// As the queue does: an error that does not say is temporary.
		var t interface{ Temporary() bool }
		if errors.As(err, &t) && !t.Temporary() {
			return metrics.ResultPermanent
		}
		return metrics.ResultTemporary
	}
	refused := 0
	for _, r := range res {
		if r.Err != nil {
			refused++
		}
	}
	switch {
	case refused == 0:
		return metrics.ResultOK
	case refused == len(res):
		return metrics.ResultRefused
	}
	return metrics.ResultPartial
}

// spooler counts messages spooled and DATA-time refusals.
func (o *observer) spooler(s smtpfront.Spooler) smtpfront.Spooler {
	if o == nil {
		return s
	}
	return meteredSpooler{Spooler: s, m: o.m}
}

type meteredSpooler struct {
	smtpfront.Spooler
	m *metrics.Metrics
}

func (s meteredSpooler) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	id, err := s.Spooler.Accept(ctx, env, body)
	if err != nil {
		s.m.Refused(refusalReason(err))
	} else {
		s.m.Received()
	}
	return id, err
}

// directory counts every directory lookup, at RCPT time and while sealing.
func (o *observer) directory(d *directory.Directory) {
	if o != nil {
		d.OnLookup(o.m.Lookup)
	}
}

// memberSkipper is what lists needs of the pipeline.
type memberSkipper interface {
	OnMemberSkipped(f func(list, reason string, n int))
}

// lists counts the list members left without a package of a post,
// appliance_list_members_skipped_total{list,reason}. The list label is a configured list
// address: a fixed set, known to every poster, that names no member, so the series stay
// bounded and a scrape reveals no recipient.
func (o *observer) lists(p memberSkipper) {
	if o == nil || len(o.cfg.Lists) == 0 {
		return
	}
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_list_members_skipped_total",
		Help: "List members who got no package of a post, by list and reason: no_certificate (no valid certificate) or unusable_certificate (valid, but the content key cannot be wrapped for it as policy asks).",
	}, []string{"list", "reason"})
	for _, l := range o.cfg.Lists {
		for _, r := range []string{pipeline.SkipNoCertificate, pipeline.SkipUnusableCertificate} {
			skipped.WithLabelValues(l.Address, r)
		}
	}
	o.m.Registry().MustRegister(skipped)
	p.OnMemberSkipped(func(list, reason string, n int) { skipped.WithLabelValues(list, reason).Add(float64(n)) })
}

// policy counts MAIL and RCPT refusals.
func (o *observer) policy(p smtpfront.Policy) smtpfront.Policy {
	if o == nil {
		return p
	}
	mp := meteredPolicy{Policy: p, m: o.m}
	// The front end finds list support by asserting smtpfront.ListPolicy: keep it visible.
	if lp, ok := p.(smtpfront.ListPolicy); ok {
		return meteredListPolicy{meteredPolicy: mp, lists: lp}
	}
	return mp
}

type meteredListPolicy struct {
	meteredPolicy
	lists smtpfront.ListPolicy
}

var _ smtpfront.ListPolicy = meteredListPolicy{}

func (p meteredListPolicy) IsList(addr string) bool { return p.lists.IsList(addr) }

func (p meteredListPolicy) CheckPoster(ctx context.Context, list, mailFrom string) error {
	err := p.lists.CheckPoster(ctx, list, mailFrom)
	if err != nil {
		p.m.Refused(refusalReason(err))
	}
	return err
}

type meteredPolicy struct {
	smtpfront.Policy
	m *metrics.Metrics
}

func (p meteredPolicy) CheckSender(ctx context.Context, mailFrom, authUser string) error {
	err := p.Policy.CheckSender(ctx, mailFrom, authUser)
	if err != nil {
		p.m.Refused(refusalReason(err))
	}
	return err
}

func (p meteredPolicy) CheckRecipient(ctx context.Context, rcpt string) error {
	err := p.Policy.CheckRecipient(ctx, rcpt)
	switch {
	case err == nil:
	case errors.Is(err, pipeline.ErrNoCertificate):
		p.m.Refused(metrics.ReasonNoCert)
	default:
		p.m.Refused(refusalReason(err))
	}
	return err
}

// refusalReason sorts a refusal the way smtpfront's reply mapping does.
func refusalReason(err error) string {
	var pe *smtpfront.PolicyError
	var temp interface{ Temporary() bool }
	switch {
	case errors.Is(err, pipeline.ErrNoCertificate):
		return metrics.ReasonNoCert
	case errors.Is(err, pipeline.ErrUnknownSender), errors.Is(err, smtpfront.ErrSenderRefused):
		return metrics.ReasonSender
	case errors.As(err, &pe):
		if pe.Temporary {
			return metrics.ReasonTemporary
		}
		return metrics.ReasonPolicy
	case errors.Is(err, smtpfront.ErrRecipientRefused):
		return metrics.ReasonPolicy
	case errors.Is(err, smtpfront.ErrMessageTooBig), errors.Is(err, smtp.ErrDataTooLarge):
		return metrics.ReasonTooBig
	case errors.Is(err, smtpfront.ErrMalformedMessage):
		return metrics.ReasonMalformed
	case errors.Is(err, smtpfront.ErrSpoolFull):
		return metrics.ReasonSpoolFull
	case errors.Is(err, smtpfront.ErrBadAddress):
		return metrics.ReasonBadAddress
	case errors.Is(err, smtpfront.ErrTooManyRecipients):
		return metrics.ReasonTooManyRcpt
	case errors.Is(err, smtpfront.ErrTemporary), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &temp) && temp.Temporary():
		return metrics.ReasonTemporary
	}
	return metrics.ReasonOther
}
