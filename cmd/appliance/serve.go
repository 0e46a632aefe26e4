package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"appliance/delivery"
	"appliance/queue"
	"appliance/smtpfront"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "-config FILE", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)

	p, err := openParts(cfg, log)
	if err != nil {
		return err
	}
	defer p.Close()
	for _, e := range p.dir.Problems() {
		log.Warn("directory: certificate file skipped", "component", "directory", "err", e)
	}

	deliv, err := delivery.New(delivery.Options{NextHop: cfg.Relay.NextHop, Hostname: cfg.SMTP.Hostname})
	if err != nil {
		return err
	}
	defer deliv.Close()
	q, err := queue.Open(queue.Options{
		Dir:             cfg.Spool.Dir,
		Workers:         cfg.Queue.Workers,
		Retry:           cfg.Queue.Retry,
		MaxAge:          cfg.Queue.MaxAge,
		Hostname:        cfg.SMTP.Hostname,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		// Refuse new mail (452 4.3.1) while the disk could not hold two more of the largest.
		MinFreeBytes: uint64(2 * cfg.SMTP.MaxMessageBytes),
		Logger:       log.With("component", "queue"),
	}, p.pipe, deliv)
	if err != nil {
		return err
	}

	srv := smtpfront.New(smtpfront.Options{
		Hostname:        cfg.SMTP.Hostname,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		MaxRecipients:   cfg.SMTP.MaxRecipients,
		Logger:          log.With("component", "smtp"),
	}, frontSpool{q}, frontPolicy{p.pipe})
	l, err := net.Listen("tcp", cfg.SMTP.Listen)
	if err != nil {
		q.Close()
		return fmt.Errorf("failed to listen on %q: %w", cfg.SMTP.Listen, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	queueDone := make(chan error, 1)
	go func() { queueDone <- q.Run(ctx) }()
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(l) }()
	log.Info("appliance started", "listen", l.Addr().String(), "next_hop", cfg.Relay.NextHop,
		"spool", cfg.Spool.Dir, "senders", len(cfg.Senders))

	sig := make(chan os.Signal, 4)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sig)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGHUP {
				if err := p.dir.Reload(); err != nil {
					log.Error("directory reload failed; keeping the previous one", "component", "directory", "err", err)
				} else {
					log.Info("directory reloaded", "component", "directory", "problems", len(p.dir.Problems()))
				}
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
