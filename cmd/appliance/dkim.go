package main

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"appliance/config"
	"appliance/dkim"
	"appliance/queue"
)

// keysDKIMRecord is `appliance keys dkim-record -config FILE -domain D`: the DNS TXT record of
// each [[dkim]] key of domain D, its public key read from the token.
func keysDKIMRecord(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keys dkim-record", "-config FILE -domain DOMAIN", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML); its [[dkim]] entries and tokens are used")
	domain := fs.String("domain", "", "the signing domain, as in a [[dkim]] entry")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *domain == "" {
		return usageError(fs, "-domain is required")
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	entries := cfg.DKIMKeys(*domain)
	if len(entries) == 0 {
		return fmt.Errorf("no [[dkim]] entry for domain %q in %s", *domain, *cfgPath)
	}
	sup, err := openTokens(cfg)
	if err != nil {
		return err
	}
	defer sup.Close()
	for _, e := range entries {
		s, err := sup.Signer(bgctx(), e.Key)
		if err != nil {
			return fmt.Errorf("dkim key %s (domain %s, selector %s): %w", e.Key, e.Domain, e.Selector, err)
		}
		rec, err := dkim.Record(s.Public())
		if err != nil {
			return fmt.Errorf("dkim key %s: %w", e.Key, err)
		}
		fmt.Fprintln(stdout, dkim.ZoneLine(e.Selector, e.Domain, rec))
	}
	return nil
}

// signerSource finds a key's crypto.Signer by its PKCS#11 URI (the token supervisor).
type signerSource interface {
	Signer(ctx context.Context, keyURI string) (crypto.Signer, error)
}

// newDKIMSigner is the DKIM signer over every [[dkim]] key, nil when there is none.
func newDKIMSigner(ctx context.Context, cfg *config.Config, src signerSource) (*dkim.Signer, error) {
	if len(cfg.DKIM) == 0 {
		return nil, nil
	}
	var keys []dkim.Key
	for _, e := range cfg.DKIM {
		s, err := src.Signer(ctx, e.Key)
		if err != nil {
			return nil, fmt.Errorf("dkim key %s (domain %s, selector %s): %w", e.Key, e.Domain, e.Selector, err)
		}
		keys = append(keys, dkim.Key{Domain: e.Domain, Selector: e.Selector, Signer: s})
	}
	return dkim.New(keys)
}

// dkimProcessor signs every package a message is sealed into, at the point where its bytes are
// final (what Process returns is what the queue spools and delivery sends): each package's
// DKIM-Signature fields go in front of it. A package whose From domain has no [[dkim]] key, or
// whose header cannot be signed, goes unsigned (logged); a signing failure (the token) defers
// the message, never sends it unsigned when a key exists.
func dkimProcessor(p queue.Processor, s *dkim.Signer, log *slog.Logger) queue.Processor {
	if s == nil {
		return p
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return dkimSigning{next: p, s: s, log: log}
}

type dkimSigning struct {
	next queue.Processor
	s    *dkim.Signer
	log  *slog.Logger
}

func (d dkimSigning) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	sealed, err := d.next.Process(ctx, id, env, body)
	if err != nil || sealed == nil {
		return sealed, err
	}
	for i, pk := range sealed.Packages {
		b, err := signBody(d.s, pk.Body)
		switch {
		case errors.Is(err, dkim.ErrNoKey) || errors.Is(err, dkim.ErrUnsignable):
			d.log.Info("package not DKIM-signed", "id", id, "package", i, "reason", err)
		case err != nil:
			return nil, dkimDeferral{fmt.Errorf("DKIM signing of package %d: %w", i, err)}
		default:
			sealed.Packages[i].Body = b
		}
	}
	return sealed, nil
}

// dkimDeferral makes a signing failure temporary for the queue: the message waits for the key.
type dkimDeferral struct{ error }

func (e dkimDeferral) Temporary() bool { return true }
func (e dkimDeferral) Unwrap() error   { return e.error }
