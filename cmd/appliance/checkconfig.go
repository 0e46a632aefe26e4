package main

import (
	"errors"
	"fmt"
	"io"

	"appliance/auth"
	"appliance/config"
	"appliance/internal/tty"
	"appliance/smtpfront"
)

func runCheckConfig(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check-config", "-config FILE [-connect]", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	connect := fs.Bool("connect", false, "also check, one line each: the token and login, every key and certificate (expiry, key, address, chain), the directory, the next hop's greeting and STARTTLS, the LDAP bind")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, "unexpected argument %q", tty.Escape(fs.Arg(0)))
	case *cfgPath == "":
		return usageError(fs, "missing -config FILE, the configuration to check")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if err := checkLoads(cfg, stdout); err != nil {
		return config.Locate(err, *cfgPath)
	}
	if *connect {
		if err := checkConnect(cfg, stdout); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", tty.Escape(*cfgPath))
	return nil
}

// checkLoads reads, without the HSM or the network, what serve reads at
// start and with the same loaders, so that check-config fails where serve
// would and an operator learns it before a restart rather than after:
// every named file exists and has the right kind (CheckFiles, which also
// reads the PIN and checks the mode of its file), the users file parses and
// is private, the TLS certificate and key load and belong together, and the
// LDAP bind password and CA files read. It reports every problem, not just
// the first; a file CheckFiles already found missing is not reported twice.
// Warnings (stdout) are for what serve accepts but an operator should fix.
func checkLoads(cfg *config.Config, stdout io.Writer) error {
	var errs []error
	filesErr := cfg.CheckFiles()
	if filesErr != nil {
		errs = append(errs, filesErr)
	}
	bad := config.ErrorKeys(filesErr)
	s := cfg.SMTP
	if s.TLSCert != "" && !bad["smtp.tls_cert"] && !bad["smtp.tls_key"] {
		if _, err := smtpfront.NewCertReloader(s.TLSCert, s.TLSKey); err != nil {
			errs = append(errs, fmt.Errorf("config: smtp.tls_cert: %w", err))
		}
	}
	if s.UsersFile != "" && !bad["smtp.users_file"] {
		if _, err := auth.LoadUsers(s.UsersFile); err != nil {
			errs = append(errs, fmt.Errorf("config: smtp.users_file: %w", err))
		}
	}
	warning, err := cfg.Directory.LDAP.CheckFiles()
	if err != nil {
		errs = append(errs, err)
	}
	if warning != "" {
		fmt.Fprintf(stdout, "warning: %s\n", warning)
	}
	for _, w := range cfg.TokenWarnings() {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	return errors.Join(errs...)
}
