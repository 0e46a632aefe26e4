package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"appliance/config"
	"appliance/daemon"
	"appliance/directory"
	"appliance/internal/tty"
)

const certsSynopsis = `list|show ADDRESS|check ADDRESS|learn FILE.eml -config FILE

  list            every certificate in the folder, with its state, the sources in use, and
                  identifiers (SKI, issuer and serial) claimed by more than one owner
  show ADDRESS    what the directory would use for ADDRESS and why: certificates, refusals, profile
  check ADDRESS   like show, one line; exit status 1 when ADDRESS has no usable certificate
  learn FILE.eml  import the signer's certificate and SMIMECapabilities of a signed message
                  into the certificates folder (then SIGHUP a running daemon)`

// runCerts is `appliance certs`: it never needs the HSM.
func runCerts(args []string, stdout, stderr io.Writer) error {
	stdout = tty.EscapingWriter(stdout) // subjects and addresses come from certificates
	fs := newFlags("certs", certsSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	// Flags may come before or after the subcommand and its argument.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, rest := pos[0], pos[1:]
	wantArgs := map[string]int{"list": 0, "show": 1, "check": 1, "learn": 1}
	n, ok := wantArgs[sub]
	if !ok {
		return fmt.Errorf("%w: unknown subcommand %q", errUsage, sub)
	}
	if len(rest) != n {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	dir, err := daemon.OpenDirectory(cfg)
	if err != nil {
		return err
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(bgctx(), time.Minute)
	defer cancel()
	pol := reportPolicy(cfg)
	switch sub {
	case "list":
		dir.WriteList(stdout, pol, time.Now())
		return nil
	case "show":
		_, err := dir.WriteShow(ctx, stdout, rest[0], pol)
		return err
	case "check":
		return dir.WriteCheck(ctx, stdout, rest[0], pol)
	default:
		return dir.LearnFile(bgctx(), stdout, rest[0], pol)
	}
}

// reportPolicy is what the directory's reports say of the configuration.
func reportPolicy(cfg *config.Config) directory.ReportPolicy {
	pol := directory.ReportPolicy{Newest: cfg.Policy.CertChoice == config.CertChoiceNewest,
		MissingCert: cfg.Policy.MissingCert, Pinned: cfg.Policy.PinnedProfiles(), Profile: cfg.Policy.Profile,
		CRLURLPrefixes: cfg.Directory.CRLURLPrefixes}
	if cfg.Directory.LDAP.Enabled() {
		pol.LDAP = cfg.Directory.LDAP.LDAPSummary()
	}
	return pol
}
