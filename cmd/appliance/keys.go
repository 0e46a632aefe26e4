package main

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"time"

	"appliance/config"
	"appliance/directory"
	"appliance/hsm"
)

const keysUsage = `usage: appliance keys SUBCOMMAND -config FILE [flags]

subcommands:
  generate -label NAME [-type rsa2048|rsa3072|p256]   make a key pair on the token
  csr -key URI -email ADDR [-cn NAME]                  write a PKCS#10 request signed on the token
  import-cert -key URI FILE.pem                        store the issued certificate beside its key
  list                                                 list key pairs and their certificates`

func runKeys(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, keysUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlags("keys "+sub, "-config FILE ...", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML); only its [hsm] section is used")
	label := fs.String("label", "", "object label for the new key pair (generate)")
	kind := fs.String("type", "rsa2048", "key type: rsa2048, rsa3072 or p256 (generate)")
	keyURI := fs.String("key", "", "PKCS#11 URI of the key, e.g. pkcs11:token=appliance;object=alice")
	email := fs.String("email", "", "address for the request's subjectAltName (csr)")
	cn := fs.String("cn", "", "common name for the request (csr); default the address")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	tok, err := openToken(cfg)
	if err != nil {
		return err
	}
	defer tok.Close()
	ctx := bgctx()

	switch sub {
	case "generate":
		if *label == "" {
			return fmt.Errorf("%w: -label is required", errUsage)
		}
		k, err := hsm.ParseKeyKind(*kind)
		if err != nil {
			return err
		}
		if _, err := tok.GenerateKeyPair(ctx, *label, k); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "generated %s key pkcs11:token=%s;object=%s\n", k, cfg.HSM.Token, *label)
	case "csr":
		if *keyURI == "" || *email == "" {
			return fmt.Errorf("%w: -key and -email are required", errUsage)
		}
		signer, err := tok.Signer(ctx, *keyURI)
		if err != nil {
			return err
		}
		name := *cn
		if name == "" {
			name = *email
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: name},
			EmailAddresses: []string{*email},
		}, signer)
		if err != nil {
			return fmt.Errorf("failed to make certificate request: %w", err)
		}
		return pem.Encode(stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	case "import-cert":
		if *keyURI == "" || fs.NArg() != 1 {
			return fmt.Errorf("%w: -key URI and one certificate file are required", errUsage)
		}
		certs, err := directory.LoadCertificates(fs.Arg(0))
		if err != nil {
			return err
		}
		if len(certs) == 0 {
			return fmt.Errorf("no certificate in %q", fs.Arg(0))
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
	default:
		fmt.Fprintln(stderr, keysUsage)
		return fmt.Errorf("%w: unknown keys subcommand %q", errUsage, sub)
	}
	return nil
}

func openToken(cfg *config.Config) (*hsm.Token, error) {
	pin, err := cfg.PIN()
	if err != nil {
		return nil, err
	}
	return hsm.Open(hsm.Config{Module: cfg.HSM.Module, TokenLabel: cfg.HSM.Token, PIN: pin,
		MaxSessions: cfg.HSM.MaxSessions, PoolTimeout: 30 * time.Second})
}
