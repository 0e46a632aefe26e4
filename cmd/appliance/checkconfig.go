package main

import (
	"fmt"
	"io"
)

func runCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", "-config FILE [-connect]", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	connect := fs.Bool("connect", false, "also log in to the HSM, load the directory and find every sender's key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.CheckFiles(); err != nil {
		return err
	}
	if *connect {
		p, err := openParts(cfg, nil)
		if err != nil {
			return err
		}
		defer p.Close()
		for _, s := range cfg.Senders {
			if _, err := p.token.Signer(bgctx(), s.Key); err != nil {
				return fmt.Errorf("sender %q: %w", s.Address, err)
			}
		}
		for _, e := range p.dir.Problems() {
			fmt.Fprintf(stdout, "directory: %v\n", e)
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", *cfgPath)
	return nil
}
