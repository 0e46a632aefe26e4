package main

import (
	"fmt"
	"io"

	"appliance/daemon"
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
	sup, err := daemon.OpenTokens(cfg)
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
