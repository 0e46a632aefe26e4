package main

import (
	"context"
	"crypto"
	"fmt"
	"io"

	"appliance/config"
	"appliance/dkim"
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
