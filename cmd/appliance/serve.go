package main

import (
	"io"

	"appliance/daemon"
)

// runServe is `appliance serve -config FILE`: the daemon (package daemon) on that configuration.
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
	return daemon.Serve(cfg, newLogger(cfg, stderr))
}
