package main

import (
	"fmt"
	"io"

	"appliance/audit"
	"appliance/internal/tty"
)

const auditUsage = `usage: appliance audit SUBCOMMAND [flags] FILE...

subcommands:
  verify [-key FILE] [-require-signed] [-json] FILE...   check the hash chain, the file sequence and
                                                         each file's signed head; names the first
                                                         record changed, removed or reordered
  show [-json] FILE...                                   print the records

FILE... are trail files (audit-NNNNNN.log), in any order.`

func runAudit(args []string, stdout, stderr io.Writer) error {
	stdout = tty.EscapingWriter(stdout) // records hold addresses and replies from outside
	help := len(args) == 0 || args[0] == "-h" || args[0] == "--help"
	sub := "SUBCOMMAND"
	if !help {
		sub, args = args[0], args[1:]
	}
	fs := newFlags("audit "+sub, "[flags] FILE...", stderr)
	asJSON := fs.Bool("json", false, "JSON output: one record a line (show), one report object (verify)")
	keyFile := fs.String("key", "", "PEM file of trusted signing keys (certificates or public keys); every seal must be signed by one (verify)")
	requireSigned := fs.Bool("require-signed", false, "an unsigned seal is a failure (verify)")
	if help {
		fmt.Fprintln(stderr, auditUsage)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageError(fs, "at least one FILE is required")
	}
	switch sub {
	case "show":
		return audit.Show(stdout, fs.Args(), *asJSON)
	case "verify":
		opts := audit.VerifyOptions{RequireSigned: *requireSigned}
		if *keyFile != "" {
			keys, err := audit.LoadKeys(*keyFile)
			if err != nil {
				return err
			}
			opts.Trusted = keys
		}
		return audit.Check(stdout, fs.Args(), opts, *asJSON)
	}
	fmt.Fprintln(stderr, auditUsage)
	return fmt.Errorf("%w: unknown audit subcommand %q", errUsage, sub)
}
