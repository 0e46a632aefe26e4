// Package daemon is `appliance serve` assembled from a parsed configuration: the token
// supervisor, the directory and the pipeline (Parts, shared with the offline commands), the
// compliance wrappers, the queue, the SMTP front end and the metrics observer; its start,
// SIGHUP reload and ordered shutdown. It and cmd/appliance are the two packages that import
// config: each package it builds takes options it fills from the configuration.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"appliance/config"
	"appliance/delivery"
	"appliance/metrics"
	"appliance/queue"
	"appliance/smtpfront"
)

// memoryLimitSlack is what the Go runtime's soft memory limit allows beyond queue.memory_bytes:
// the daemon's own heap (connections, directory, caches) and the garbage of the last message.
const memoryLimitSlack = 64 << 20

// setMemoryLimit gives the Go runtime a soft memory limit of queue.memory_bytes plus
// memoryLimitSlack (112 MiB by default), unless GOMEMLIMIT says otherwise or the budget is off:
// without it the collector lets the heap grow to twice what was live, so the garbage of one
// large message still sits beside the next one (160 MB at 50 clients sending 10 MB, against
// 130 with it). A message whose sealing needs more than the limit is sealed with the collector
// running more often (the runtime caps that at half the CPU), not refused.
func setMemoryLimit(cfg *config.Config, log *slog.Logger) {
	if cfg.Queue.MemoryBytes <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cfg.Queue.MemoryBytes + memoryLimitSlack
	debug.SetMemoryLimit(limit)
	log.Debug("memory limit", "bytes", limit)
}

// Serve runs the daemon on cfg until SIGTERM or SIGINT (an ordered shutdown: the front end
// stops, the queue finishes or leaves work in the spool, the audit trail is sealed last) or a
// fatal error; SIGHUP rereads the directory, the users file, the TLS pair and the lists' members.
func Serve(cfg *config.Config, log *slog.Logger) error {
	setMemoryLimit(cfg, log)
	for _, w := range cfg.TokenWarnings() {
		log.Warn("tokens: "+w, "component", "hsm")
	}
	// The token may be missing now or vanish later: the supervisor reconnects, sealing waits.
	sup, err := startTokenSupervisor(cfg, log)
	if err != nil {
		return err
	}
	defer sup.Close()
	obs := newObserver(cfg) // nil without [metrics]; its wraps then change nothing (metrics.Observer)
	p, err := openPartsWith(cfg, log, sup, obs.Instrument)
	if err != nil {
		return err
	}
	obs.Directory(p.Dir)
	defer p.Close()
	for _, e := range p.Dir.Problems() {
		log.Warn("directory: certificate file skipped", "component", "directory", "err", e)
	}
	for _, a := range p.Dir.Ambiguities() {
		log.Warn("directory: identifier claimed by more than one owner; refused", "component", "directory", "id", a.ID, "owners", a.Owners)
	}

	comp, err := openCompliance(context.Background(), cfg, sup, p.Pipe, obs, log) // compliance.go; package compliance
	if err != nil {
		return err
	}
	defer comp.Close() // after the queue stopped: deferred first, run last
	// Every transaction in flight may leave its connection idle for the next one: keep as many
	// as the queue runs at once (with 4 kept, the 1 MB / 21-package load dialled for one
	// transaction in six).
	deliv, err := delivery.New(delivery.Options{NextHop: cfg.Relay.NextHop, Hostname: cfg.SMTP.Hostname,
		MaxIdle: cfg.QueueWorkers() * queue.DefaultPackageConcurrency})
	if err != nil {
		return err
	}
	defer deliv.Close()
	q, err := queue.Open(queue.Options{
		Dir:             cfg.Spool.Dir,
		Workers:         cfg.QueueWorkers(),
		Retry:           cfg.Queue.Retry,
		MaxAge:          cfg.Queue.MaxAge,
		Hostname:        cfg.SMTP.Hostname,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		// Refuse new mail (452 4.3.1) while the disk could not hold two more of the largest.
		MinFreeBytes: uint64(2 * cfg.SMTP.MaxMessageBytes),
		Logger:       log.With("component", "queue"),
		Outcome:      comp.Outcome(),
	}, comp.Processor(p.Pipe), obs.Deliverer(deliv))
	if err != nil {
		return err
	}
	sup.SetOnUp(func() { q.RetrySealing() })

	// TLS, users, trusted networks, sender authorization and limits: front.go.
	fr, err := newFront(cfg, log.With("component", "smtp"))
	if err != nil {
		q.Close()
		return err
	}
	srv := smtpfront.New(loadOptions(cfg, q, fr.options(smtpfront.Options{
		Hostname:        cfg.SMTP.Hostname,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		MaxRecipients:   cfg.SMTP.MaxRecipients,
		Logger:          log.With("component", "smtp"),
	})), obs.Spooler(comp.Spooler(checkMessages(p.Pipe, frontSpool{q}))), obs.Policy(fr.policy(withLists(cfg, p.Pipe, policyFor(cfg, sup, frontPolicy{p.Pipe})))))
	l, err := net.Listen("tcp", cfg.SMTP.Listen)
	if err != nil {
		q.Close()
		return fmt.Errorf("failed to listen on %q: %w", cfg.SMTP.Listen, err)
	}
	tl, err := fr.listenTLS()
	if err != nil {
		l.Close()
		q.Close()
		return err
	}
	obs.Front(srv)
	obs.Tokens(sup.Supervisor)
	if err := obs.Start(q, sup.Healthy, log); err != nil {
		l.Close()
		if tl != nil {
			tl.Close()
		}
		q.Close()
		return err
	}
	defer obs.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	queueDone := make(chan error, 1)
	go func() { queueDone <- q.Run(ctx) }()
	serveDone := make(chan error, 2)
	go func() { serveDone <- srv.Serve(l) }()
	if tl != nil {
		go func() { serveDone <- srv.ServeTLS(tl) }()
	}
	log.Info("appliance started", "listen", l.Addr().String(), "next_hop", cfg.Relay.NextHop,
		"spool", cfg.Spool.Dir, "senders", len(cfg.Senders))

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				if err := p.Dir.Reload(); err != nil {
					log.Error("directory reload failed; keeping the previous one", "component", "directory", "err", err)
				} else {
					log.Info("directory reloaded", "component", "directory", "problems", len(p.Dir.Problems()))
				}
				if n, err := fr.Reload(); err != nil {
					log.Error("users file reload failed; keeping the previous one", "component", "smtp", "err", err)
				} else {
					log.Info("users reloaded", "component", "smtp", "users", n)
				}
				if leaf, err := fr.ReloadTLS(); err != nil {
					log.Error("tls certificate reload failed; keeping the previous one", "component", "smtp", "err", err)
				} else if leaf != nil {
					log.Info("tls certificate reloaded", "component", "smtp", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
				}
				reloadLists(p, log)
				continue
			}
			log.Info("shutting down", "signal", s.String())
			return shutdown(srv, q, cancel, log)
		case err := <-serveDone:
			if err != nil && !errors.Is(err, net.ErrClosed) {
				q.Close()
				return fmt.Errorf("smtp server stopped: %w", err)
			}
			return nil
		case err := <-queueDone:
			srv.Close()
			return fmt.Errorf("queue stopped: %v", err)
		}
	}
}

// shutdown stops accepting mail, lets in-flight work finish for a while, and then cuts it short:
// anything unfinished is still in the spool for the next start.
func shutdown(srv *smtpfront.Server, q *queue.Queue, cancel context.CancelFunc, log interface {
	Info(string, ...any)
}) error {
	ctx, stop := context.WithTimeout(context.Background(), 20*time.Second)
	defer stop()
	srv.Shutdown(ctx)
	closed := make(chan struct{})
	go func() { q.Close(); close(closed) }()
	select {
	case <-closed:
	case <-ctx.Done():
		cancel()
		<-closed
	}
	log.Info("stopped")
	return nil
}

// loadOptions sets the front end's limits under load from [smtp]: the global connection limit,
// trusted networks limited apart, stress, the minimum transfer rate, and load shedding fed by
// the queue (messages in the spool, messages waiting for the HSM) and the spool directory.
func loadOptions(cfg *config.Config, q *queue.Queue, o smtpfront.Options) smtpfront.Options {
	l := cfg.SMTP.SMTPLoad
	o.MaxConns = l.MaxConnections
	o.MaxConnsPerTrustedIP = l.MaxConnectionsPerTrustedIP
	o.ReservedTrustedConns = l.ReservedTrustedConnections
	if o.ReservedTrustedConns == 0 {
		o.ReservedTrustedConns = -1 // 0 in the config means none, not the default
	}
	o.StressConns = l.StressConnections
	o.StressReadTimeout = l.StressIdleTimeout
	o.MinRateBytes = l.MinTransferBytes
	if o.MinRateBytes == 0 {
		o.MinRateBytes = -1
	}
	o.MinRateInterval = l.MinTransferInterval
	for _, n := range cfg.SMTP.Trusted() {
		if p, err := n.Prefix(); err == nil {
			o.TrustedNets = append(o.TrustedNets, p)
		}
	}
	src := smtpfront.LoadSource{
		SpoolMessages: func() int { return q.Stats().Messages },
		HSMBacklog:    func() int { return q.Stats().Received },
	}
	if l.ShedSpoolBytes > 0 {
		src.SpoolBytes = queue.SpoolBytes(cfg.Spool.Dir)
	}
	o.Load = smtpfront.NewLoadShedder(smtpfront.LoadLimits{
		SpoolMessages: l.ShedSpoolMessages,
		SpoolBytes:    l.ShedSpoolBytes,
		HeapBytes:     uint64(l.ShedMemoryBytes),
		HSMBacklog:    l.ShedHSMBacklog,
	}, src, nil)
	return o
}

// newObserver is the metrics observer of [metrics]; nil when it is off.
func newObserver(cfg *config.Config) *metrics.Observer {
	if !cfg.Metrics.Enabled() {
		return nil
	}
	o := metrics.ObserveOptions{Listen: cfg.Metrics.Listen, SpoolDir: cfg.Spool.Dir, NextHop: cfg.Relay.NextHop}
	for _, l := range cfg.Lists {
		o.Lists = append(o.Lists, l.Address)
	}
	return metrics.NewObserver(o)
}
