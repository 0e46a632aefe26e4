// Command appliance is the outbound S/MIME relay: it signs and encrypts mail with keys on a
// PKCS#11 HSM and never reveals a Bcc recipient through the encryption.
//
//	appliance init [flags]                guided setup: token, keys, CSRs, certificates, config
//	appliance serve -config FILE          run the daemon
//	appliance seal -config FILE ...       the same pipeline offline, one file per package
//	appliance inspect [-json] FILE.eml    who an S/MIME message reveals
//	appliance check-config -config FILE   validate a configuration
//	appliance keys ...                    keys and certificates on the token
//	appliance version [-config FILE]      the build, and the PKCS#11 module and token
package main

import (
	"appliance/internal/tty"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"init", "guided setup: token, sender keys and CSRs, certificates, a checked config", runInit},
	{"serve", "run the daemon: SMTP in, spool, seal on the HSM, deliver", runServe},
	{"seal", "seal one message offline: one file per package and manifest.json", runSeal},
	{"inspect", "show who an S/MIME message reveals (headers, RecipientInfo owners)", runInspect},
	{"check-config", "validate a configuration file", runCheckConfig},
	{"keys", "generate keys on the token, make CSRs, import certificates, list", runKeys},
	{"audit", "verify the audit trail (hash chain, file sequence, signed heads); show its records", runAudit},
	{"certs", "what the certificate directory would use and why; learn from signed mail", runCerts},
	{"hash-password", "print an argon2id hash of the password on stdin, for smtp.users_file", runHashPassword},
	{"version", "the build (version, revision, Go); with -config the PKCS#11 module and token", runVersion},
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[0] == "help" {
		if len(args) == 2 {
			// appliance help COMMAND: the command's own -h.
			for _, c := range commands {
				if c.name == args[1] {
					_ = c.run([]string{"-h"}, io.Discard, stdout)
					return 0
				}
			}
		}
		if err := runHelp(args[1:], stdout, stderr); err != nil {
			return 2
		}
		return 0
	}
	if len(args) > 0 && (args[0] == "-version" || args[0] == "--version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return 0
			case errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errRefused):
				fmt.Fprintf(stderr, "appliance %s: %s\n", c.name, tty.EscapeLines(err.Error()))
				return exitRefused
			case errors.Is(err, errUsage):
				// A bare errUsage has printed its message and usage already (usageError); a
				// wrapped one names what is wrong, and the command's -h shows the rest.
				if err != errUsage {
					fmt.Fprintf(stderr, "appliance %s: %s\n", c.name, tty.EscapeLines(err.Error()))
					_ = c.run([]string{"-h"}, io.Discard, stderr)
				}
				return 2
			default:
				fmt.Fprintf(stderr, "appliance %s: %s\n", c.name, tty.EscapeLines(err.Error()))
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "appliance: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: appliance COMMAND [flags]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'appliance COMMAND -h' for the flags of one command, 'appliance help config' for\nevery configuration key. New here? Start with 'appliance init'.")
}

// newFlags makes a FlagSet whose errors and help go to stderr and are returned, not exited on.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: appliance %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// usageError reports a wrong or missing argument of fs's command, then its usage, and returns
// errUsage (exit status 2).
func usageError(fs *flag.FlagSet, format string, args ...any) error {
	fmt.Fprintf(fs.Output(), "appliance %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fs.Usage()
	return errUsage
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
