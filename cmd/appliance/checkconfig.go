package main

import (
	"errors"
	"fmt"
	"io"
	"os"

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
	if err := checkLDAPFiles(cfg, stdout); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// errEmptyBindPassword: a bind DN with an empty password is an
// "unauthenticated bind" (RFC 4513 section 5.1.2), which some servers
// accept as anonymous; the LDAP client refuses it at the first lookup, so
// check-config refuses it now.
var errEmptyBindPassword = errors.New("empty bind password")

func checkLDAPFiles(cfg *config.Config, stdout io.Writer) error {
	l := cfg.Directory.LDAP
	if !l.Enabled() {
		return nil
	}
	o, err := directoryOptions(cfg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if o.LDAP == nil || o.LDAP.BindDN == "" {
		return nil
	}
	if o.LDAP.BindPassword == "" {
		return fmt.Errorf("config: directory.ldap.bind_password_file %q: %w", l.BindPasswordFile, errEmptyBindPassword)
	}
	if st, err := os.Stat(l.BindPasswordFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(stdout, "warning: directory.ldap.bind_password_file %q has mode %04o; want 0600 or stricter\n",
			l.BindPasswordFile, st.Mode().Perm())
	}
	return nil
}
