package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"time"

	"appliance/config"
	"appliance/daemon"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/tty"
)

const keysUsage = `usage: appliance keys SUBCOMMAND -config FILE [-token NAME] [flags]

subcommands:
  generate -label NAME [-type rsa2048|rsa3072|p256|ed25519]   make a key pair on the token
  csr -key URI -email ADDR [-cn NAME]                  write a PKCS#10 request signed on the token
  import-cert -key URI FILE.pem                        store the issued certificate beside its key
  list                                                 list key pairs and their certificates
  mechanisms                                           list what the token can do, and what its roles need
  dkim-record -domain D                                print the DNS TXT record of each [[dkim]] key of D

-token NAME picks one of the configuration's [[token]] entries; it may be left out when there is
one token (a lone [hsm] is one token, named by its label).`

func runKeys(args []string, stdout, stderr io.Writer) error {
	stdout = tty.EscapingWriter(stdout) // labels and subjects come from the token and certificates
	if len(args) > 0 && args[0] == "dkim-record" {
		return keysDKIMRecord(args[1:], stdout, stderr)
	}
	help := len(args) == 0 || args[0] == "-h" || args[0] == "--help"
	sub := "SUBCOMMAND"
	if !help {
		sub, args = args[0], args[1:]
	}
	fs := newFlags("keys "+sub, "-config FILE ...", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML); only its [hsm] and [[token]] sections are used")
	tokenName := fs.String("token", "", "the [[token]] to work on (default: the only one)")
	label := fs.String("label", "", "object label for the new key pair (generate)")
	kind := fs.String("type", "rsa2048", "key type: rsa2048, rsa3072, p256 or ed25519 (ed25519: DKIM keys only) (generate)")
	keyURI := fs.String("key", "", "PKCS#11 URI of the key, e.g. pkcs11:token=appliance;object=alice")
	email := fs.String("email", "", "address for the request's subjectAltName (csr)")
	cn := fs.String("cn", "", "common name for the request (csr); default the address")
	if help {
		// Every flag, whichever subcommand takes it, beside the subcommands.
		fmt.Fprintln(stderr, keysUsage)
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
	// Everything the command line alone can get wrong is refused before a token is opened.
	var kindOK hsm.KeyKind
	switch sub {
	case "generate":
		if *label == "" {
			return usageError(fs, "-label is required")
		}
		k, err := hsm.ParseKeyKind(*kind)
		if err != nil {
			return usageError(fs, "-type: %v", err)
		}
		kindOK = k
	case "csr":
		if *keyURI == "" || *email == "" {
			return usageError(fs, "-key and -email are required")
		}
	case "import-cert":
		if *keyURI == "" || fs.NArg() != 1 {
			return usageError(fs, "-key URI and one certificate file are required")
		}
	case "list", "mechanisms":
	default:
		fmt.Fprintln(stderr, keysUsage)
		return fmt.Errorf("%w: unknown keys subcommand %q", errUsage, sub)
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	t, err := pickToken(cfg, *tokenName)
	if err != nil {
		return err
	}
	tok, err := openToken(cfg, t, sub == "mechanisms")
	if err != nil {
		return err
	}
	defer tok.Close()
	ctx := bgctx()

	switch sub {
	case "generate":
		k := kindOK
		if _, err := tok.GenerateKeyPair(ctx, *label, k); err != nil {
			return err
		}
		info, err := tok.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "generated %s key %s\n", k, &hsm.URI{Token: info.Label, Object: *label})
	case "csr":
		signer, err := tok.Signer(ctx, *keyURI)
		if err != nil {
			return err
		}
		name := *cn
		if name == "" {
			name = *email
		}
		csr, err := hsm.CertificateRequest(signer, name, *email)
		if err != nil {
			return err
		}
		_, err = stdout.Write(csr)
		return err
	case "import-cert":
		certs, err := directory.LoadChain(fs.Arg(0))
		if err != nil {
			return err
		}
		u, err := hsm.ParseURI(*keyURI)
		if err != nil {
			return err
		}
		if err := tok.ImportCertificate(ctx, u.Object, certs[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported certificate %q serial %#x for %s\n", certs[0].Subject.String(), certs[0].SerialNumber, *keyURI)
	case "list":
		keys, err := tok.ListKeys(ctx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(stdout, "%s\tid=%s", k.URI, hex.EncodeToString(k.ID))
			if c := k.Certificate; c != nil {
				fmt.Fprintf(stdout, "\tcert=%q expires=%s", c.Subject.String(), c.NotAfter.Format(time.DateOnly))
			}
			fmt.Fprintln(stdout)
		}
	case "mechanisms":
		lines, err := hsm.MechanismReport(tok, t.Name, t.Roles)
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
		return err
	}
	return nil
}

// pickToken is the configured token called name, or the only one when name is empty.
func pickToken(cfg *config.Config, name string) (config.Token, error) {
	t, err := cfg.PickToken(name)
	if err != nil {
		return t, fmt.Errorf("%w: %v", errUsage, err)
	}
	return t, nil
}

// openToken opens the configured token t for its roles, or, to inspect it, without checking them.
func openToken(cfg *config.Config, t config.Token, inspect bool) (*hsm.Token, error) {
	hc, err := daemon.TokenConfig(cfg, t)
	if err != nil {
		return nil, err
	}
	hc.Inspect = inspect
	return hsm.Open(hc)
}
