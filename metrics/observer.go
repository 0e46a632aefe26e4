package metrics

// The daemon's observer: what the pipeline did comes from its events (pipeline.Events), to which
// the Observer subscribes; the rest from wrappers around the interfaces where packages meet
// (queue.Deliverer, smtpfront.Spooler and Policy, the HSM token the pipeline gets and what it
// hands out), so that no core package imports metrics. With [metrics] off the daemon's Observer
// is nil, subscribes to nothing and every wrap returns its argument unchanged.

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
	"appliance/directory"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/retry"
	"appliance/seal"
	"appliance/smtpfront"
	"appliance/split"
)

// ObserveOptions are what the Observer needs of the configuration.
type ObserveOptions struct {
	Listen   string   // the address of /metrics, /healthz and /readyz
	SpoolDir string   // the readiness check writes a file there
	NextHop  string   // the readiness check's next hop
	Lists    []string // the configured list addresses: the list label's values
}

// Observer owns the daemon's metrics and readiness checks. A nil *Observer observes nothing.
type Observer struct {
	m    *Metrics
	opts ObserveOptions
	hop  *NextHop
	srv  *Server
}

// NewObserver makes the daemon's observer; the daemon keeps nil when [metrics] is off.
func NewObserver(o ObserveOptions) *Observer {
	return &Observer{m: New(), opts: o, hop: &NextHop{Addr: o.NextHop}}
}

// Start registers the queue's gauges and opens the listener; hsmHealthy is the token
// supervisor's verdict (nil while the token is logged in and answering).
func (o *Observer) Start(q *queue.Queue, hsmHealthy func() error, log *slog.Logger) error {
	if o == nil {
		return nil
	}
	o.m.ObserveQueue(func() QueueStats {
		s := q.Stats()
		return QueueStats{Messages: s.Messages, Received: s.Received, SealDeferred: s.SealDeferred,
			Pending: s.Pending, Deferred: s.Deferred, Delivered: s.Delivered, Failed: s.Failed, DSNs: s.DSNs}
	})
	checks := []Check{
		{Name: "hsm", Probe: func(context.Context) error { return hsmHealthy() }},
		{Name: "spool", Probe: func(context.Context) error { return spoolWritable(o.opts.SpoolDir) }},
		{Name: "next_hop", Probe: o.hop.Probe},
	}
	srv, err := o.m.Serve(o.opts.Listen, checks)
	if err != nil {
		return err
	}
	o.srv = srv
	log.Info("metrics listening", "component", "metrics", "listen", srv.Addr())
	return nil
}

// Front registers the front end's connection and shedding figures.
func (o *Observer) Front(srv *smtpfront.Server) {
	if o == nil {
		return
	}
	o.m.ObserveFront(func() FrontStats {
		s := srv.Stats()
		return FrontStats{Open: s.Open, Trusted: s.Trusted, Stressed: s.Stressed, StressEntered: s.StressEntered,
			RefusedTotal: s.RefusedTotal, RefusedPerIP: s.RefusedPerIP, RateClosed: s.RateClosed, Shed: s.Shed}
	})
}

func (o *Observer) Close() {
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

// Instrument has the pipeline tell the observer what it does (pipeline.Events) and meters the
// token it gets; it has the shape of the daemon's pipeline option functions.
func (o *Observer) Instrument(po *pipeline.Options) {
	if o == nil {
		return
	}
	po.Token = meteredToken{Token: po.Token, m: o.m}
	po.Events = pipeline.Events{
		Classified: o.m.Classified,
		Refused:    o.m.ContentRefused,
		// Counted when the package is written to the spool (so a message sealed again after
		// a crash counts again: it was), by the mode and profile the pipeline recorded.
		Sealed:       func(mode, profile string) { o.m.Sealed(packageKind(mode, profile)) },
		ListExpanded: o.listSkips(),
	}
}

type meteredToken struct {
	pipeline.Token
	m *Metrics
}

func (t meteredToken) Signer(ctx context.Context, uri string) (crypto.Signer, error) {
	start := time.Now()
	s, err := t.Token.Signer(ctx, uri)
	t.m.HSM(OpFindKey, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return t.m.Signer(s), nil
}

func (t meteredToken) NewContentKey(ctx context.Context) (cms.ContentKey, error) {
	start := time.Now()
	k, err := t.Token.NewContentKey(ctx)
	t.m.HSM(OpGenerateCEK, time.Since(start), err)
	if err != nil {
		return nil, err
	}
	return t.m.ContentKey(k), nil
}

// JournalSealed counts a journal package written to the spool by its content profile (mode
// journal); the daemon gives it to compliance, which adds the journal package after the pipeline.
func (o *Observer) JournalSealed(profile string) {
	if o == nil {
		return
	}
	if profile != ProfileCompat && profile != ProfileModern {
		profile = ProfileNone
	}
	o.m.Sealed(ModeJournal, profile)
}

// packageKind is what metrics count for a package's recorded mode and profile: what the
// pipeline did not label is "other".
func packageKind(mode, profile string) (string, string) {
	switch {
	case mode == seal.ModeSigned && profile == seal.ProfileNone:
		return ModeSigned, ProfileNone
	case (mode == seal.ModeEncrypted || mode == seal.ModePassThrough) &&
		(profile == seal.ProfileCompat || profile == seal.ProfileModern):
		return mode, profile
	}
	return ModeOther, ProfileNone
}

// Deliverer counts transactions with the next hop and tells the readiness check about them.
func (o *Observer) Deliverer(d queue.Deliverer) queue.Deliverer {
	if o == nil {
		return d
	}
	return meteredDeliverer{next: d, m: o.m, hop: o.hop}
}

type meteredDeliverer struct {
	next queue.Deliverer
	m    *Metrics
	hop  *NextHop
}

func (d meteredDeliverer) Deliver(ctx context.Context, mailFrom string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	res, err := d.next.Deliver(ctx, mailFrom, rcptTo, body)
	d.hop.Record(err)
	d.m.Delivery(deliveryResult(res, err))
	return res, err
}

func deliveryResult(res []queue.RcptResult, err error) string {
	if err != nil {
		// As the queue does: a delivery error that does not say is temporary.
		if retry.IsTemporary(err, true) {
			return ResultTemporary
		}
		return ResultPermanent
	}
	refused := 0
	for _, r := range res {
		if r.Err != nil {
			refused++
		}
	}
	switch {
	case refused == 0:
		return ResultOK
	case refused == len(res):
		return ResultRefused
	}
	return ResultPartial
}

// Spooler counts messages spooled and DATA-time refusals.
func (o *Observer) Spooler(s smtpfront.Spooler) smtpfront.Spooler {
	if o == nil {
		return s
	}
	return meteredSpooler{Spooler: s, m: o.m}
}

type meteredSpooler struct {
	smtpfront.Spooler
	m *Metrics
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

// Directory counts every directory lookup, at RCPT time and while sealing.
func (o *Observer) Directory(d *directory.Directory) {
	if o != nil {
		d.OnLookup(o.m.Lookup)
	}
}

// listSkips counts the list members left without a package of a post,
// appliance_list_members_skipped_total{list,reason}. The list label is a configured list
// address: a fixed set, known to every poster, that names no member, so the series stay
// bounded and a scrape reveals no recipient. nil without lists.
func (o *Observer) listSkips() func(list string, packages int, skipped map[string]int) {
	if len(o.opts.Lists) == 0 {
		return nil
	}
	counter := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_list_members_skipped_total",
		Help: "List members who got no package of a post, by list and reason: no_certificate (no valid certificate) or unusable_certificate (valid, but the content key cannot be wrapped for it as policy asks).",
	}, []string{"list", "reason"})
	for _, l := range o.opts.Lists {
		for _, r := range []string{lists.SkipNoCertificate, lists.SkipUnusableCertificate} {
			counter.WithLabelValues(l, r)
		}
	}
	o.m.Registry().MustRegister(counter)
	return func(list string, _ int, skipped map[string]int) {
		for reason, n := range skipped {
			if n > 0 {
				counter.WithLabelValues(list, reason).Add(float64(n))
			}
		}
	}
}

// Policy counts MAIL and RCPT refusals.
func (o *Observer) Policy(p smtpfront.Policy) smtpfront.Policy {
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
	m *Metrics
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
		p.m.Refused(ReasonNoCert)
	default:
		p.m.Refused(refusalReason(err))
	}
	return err
}

// refusalReason sorts a refusal the way smtpfront's reply mapping does; a message the pipeline
// refused for its content at end of DATA has a reason of its own (the pipeline's event says
// which).
func refusalReason(err error) string {
	var pe *smtpfront.PolicyError
	var re *pipeline.RefusedError
	switch {
	case errors.As(err, &re), errors.Is(err, split.ErrRecipientInfoRejected):
		return ReasonContent
	case errors.Is(err, pipeline.ErrNoCertificate):
		return ReasonNoCert
	case errors.Is(err, pipeline.ErrUnknownSender), errors.Is(err, smtpfront.ErrSenderRefused):
		return ReasonSender
	case errors.As(err, &pe):
		if pe.Temporary {
			return ReasonTemporary
		}
		return ReasonPolicy
	case errors.Is(err, smtpfront.ErrRecipientRefused):
		return ReasonPolicy
	case errors.Is(err, smtpfront.ErrMessageTooBig), errors.Is(err, smtp.ErrDataTooLarge):
		return ReasonTooBig
	case errors.Is(err, smtpfront.ErrMalformedMessage):
		return ReasonMalformed
	case errors.Is(err, smtpfront.ErrSpoolFull):
		return ReasonSpoolFull
	case errors.Is(err, smtpfront.ErrBadAddress):
		return ReasonBadAddress
	case errors.Is(err, smtpfront.ErrTooManyRecipients):
		return ReasonTooManyRcpt
	case errors.Is(err, smtpfront.ErrTemporary), errors.Is(err, context.DeadlineExceeded),
		retry.IsTemporary(err, false):
		return ReasonTemporary
	}
	return ReasonOther
}
