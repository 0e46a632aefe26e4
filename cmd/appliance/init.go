package main

// `appliance init`: from nothing to a checked configuration. It finds the installed PKCS#11
// modules, picks the token (or initialises one on a free slot), generates or reuses a key per
// sender and writes its CSR, imports the certificates once issued, writes a commented
// configuration and runs check-config -connect on it. Every answer can be given by a flag;
// without -batch each is asked on stdin with the flag's value as the default. No existing file
// is overwritten unless the operator says so (-overwrite, or yes to the question).

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"appliance/config"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/tty"
)

const initSynopsis = `[-batch] [-config FILE] [-module LIB] [-token LABEL [-init-token -so-pin-file FILE]]
         [-pin-file FILE] -sender ADDR ... [-cert ADDR=FILE ...] [-next-hop HOST:PORT] ...

Guided setup. Run it once to choose the module and token, make a key and a CSR per sender and
write the configuration; have the CSRs signed by your CA; run it again with -cert ADDR=FILE for
each issued certificate to import them and check everything with check-config -connect.
Without -batch every choice is asked on stdin, with the flag's value as the default.`

type initOptions struct {
	batch, overwrite, initToken bool
	config, module, token       string
	pinFile, soPINFile          string
	senders, certs              stringList
	nextHop, listen, spool      string
	certsDir, roots, keyType    string
}

func runInit(args []string, stdout, stderr io.Writer) error {
	o := &initOptions{}
	fs := newFlags("init", initSynopsis, stderr)
	fs.BoolVar(&o.batch, "batch", false, "ask nothing: every choice from the flags (for scripts)")
	fs.BoolVar(&o.overwrite, "overwrite", false, "overwrite existing files without asking")
	fs.StringVar(&o.config, "config", "/etc/appliance/appliance.toml", "the configuration file to write")
	fs.StringVar(&o.module, "module", "", "PKCS#11 module; default the first one found")
	fs.StringVar(&o.token, "token", "appliance", "token label")
	fs.BoolVar(&o.initToken, "init-token", false, "initialise a token with this label on a free slot when there is none")
	fs.StringVar(&o.soPINFile, "so-pin-file", "", "file holding the security officer PIN, for -init-token")
	fs.StringVar(&o.pinFile, "pin-file", "", "file holding the user PIN (made, with a random PIN, by -init-token); default pin beside -config")
	fs.Var(&o.senders, "sender", "an address to sign as (repeat); its key is made on the token unless one has its label")
	fs.Var(&o.certs, "cert", "ADDR=FILE: the certificate chain issued for a sender's CSR, to import (repeat)")
	fs.StringVar(&o.keyType, "key-type", "rsa2048", "type of new keys: rsa2048, rsa3072 or p256")
	fs.StringVar(&o.nextHop, "next-hop", "127.0.0.1:10026", "where packages go (Postfix's re-injection listener, or a smarthost)")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:10025", "the SMTP listener")
	fs.StringVar(&o.spool, "spool", "/var/spool/appliance", "the spool directory")
	fs.StringVar(&o.certsDir, "certs", "/etc/appliance/certs", "folder of recipient certificates")
	fs.StringVar(&o.roots, "roots", "/etc/appliance/roots.pem", "trust anchors and intermediates")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", tty.Escape(fs.Arg(0)))
	}
	kind, err := hsm.ParseKeyKind(o.keyType)
	if err != nil {
		return usageError(fs, "-key-type: %v", err)
	}
	if kind == hsm.Ed25519 {
		return usageError(fs, "-key-type: ed25519 keys sign DKIM only, not S/MIME; use rsa2048, rsa3072 or p256")
	}
	certFor := map[string]string{}
	for _, c := range o.certs {
		addr, file, ok := strings.Cut(c, "=")
		if !ok || addr == "" || file == "" {
			return usageError(fs, "-cert %q: want ADDR=FILE", tty.Escape(c))
		}
		certFor[strings.ToLower(addr)] = file
	}
	if o.batch && len(o.senders) == 0 {
		return usageError(fs, "missing -sender ADDR, at least one address to sign as")
	}
	p := tty.NewPrompter(os.Stdin, stdout, o.batch)
	p.Overwrite = o.overwrite
	return o.run(p, kind, certFor, fs)
}

func (o *initOptions) run(p *tty.Prompter, kind hsm.KeyKind, certFor map[string]string, fs *flag.FlagSet) error {
	// 1. The module.
	mods := hsm.FindModules()
	if o.module == "" {
		if len(mods) == 0 {
			return errors.New("no PKCS#11 module found (install softhsm2 or opensc, or give -module)")
		}
		o.module = mods[0]
	}
	if !p.Batch {
		fmt.Fprintln(p.Out, "PKCS#11 modules found:")
		for i, m := range mods {
			fmt.Fprintf(p.Out, "  %d) %s\n", i+1, m)
		}
		a := p.Ask("module (number or path)", o.module)
		var n int
		if _, err := fmt.Sscanf(a, "%d", &n); err == nil && n >= 1 && n <= len(mods) && fmt.Sprint(n) == a {
			a = mods[n-1]
		}
		o.module = a
	}
	// 2. The token.
	tokens, err := hsm.ListTokens(o.module)
	if err != nil {
		return err
	}
	if !p.Batch && len(tokens) > 0 {
		fmt.Fprintf(p.Out, "tokens on %s: %s\n", o.module, strings.Join(tokens, ", "))
	}
	o.token = p.Ask("token label", o.token)
	cfgDir := filepath.Dir(o.config)
	if o.pinFile == "" {
		o.pinFile = filepath.Join(cfgDir, "pin")
	}
	o.pinFile = p.Ask("user PIN file", o.pinFile)
	if !slices.Contains(tokens, o.token) {
		if !o.initToken && !(!p.Batch && p.Confirm(fmt.Sprintf("no token %q: initialise one on a free slot?", o.token))) {
			return fmt.Errorf("no token %q on %s (tokens: %s); -init-token initialises one", o.token, o.module, strings.Join(tokens, ", "))
		}
		if o.soPINFile == "" {
			o.soPINFile = p.Ask("security officer PIN file", "")
		}
		if err := o.initialiseToken(p); err != nil {
			return err
		}
	}
	pin, err := hsm.LoadPIN(o.pinFile, "")
	if err != nil {
		return fmt.Errorf("user PIN: %w", err)
	}
	tok, err := hsm.Open(hsm.Config{Module: o.module, TokenLabel: o.token, PIN: pin, MaxSessions: 2})
	if err != nil {
		return err
	}
	defer tok.Close()

	// 3. Senders: a key each, its CSR, and its certificate when given.
	if !p.Batch {
		more := p.Ask("sender addresses (comma-separated)", strings.Join(o.senders, ","))
		o.senders = nil
		for _, a := range strings.Split(more, ",") {
			if a = strings.TrimSpace(a); a != "" {
				o.senders = append(o.senders, a)
			}
		}
	}
	if len(o.senders) == 0 {
		return usageError(fs, "no sender address: give -sender ADDR")
	}
	var senders []config.InitSender
	missing := 0
	used := map[string]bool{}
	for _, addr := range o.senders {
		k, err := tok.SetupSenderKey(bgctx(), o.token, addr, used, kind)
		switch {
		case err != nil:
			return fmt.Errorf("sender %s: %w", addr, err)
		case k.Made:
			fmt.Fprintf(p.Out, "generated %s key %s for %s\n", kind, k.URI, addr)
		default:
			fmt.Fprintf(p.Out, "using the key %s already on the token for %s\n", k.URI, addr)
		}
		base := filepath.Join(cfgDir, "senders", addr)
		if err := p.WriteNew(base+".csr", k.CSR, 0o644); err != nil {
			return err
		}
		certPath := base + ".pem"
		if file := certFor[strings.ToLower(addr)]; file != "" || !p.Batch {
			if !p.Batch {
				file = p.Ask(fmt.Sprintf("issued certificate for %s (PEM file; empty: not yet)", addr), file)
			}
			if file != "" {
				if err := o.importCert(p, tok, addr, k.Label, file, certPath); err != nil {
					return err
				}
			}
		}
		if _, err := os.Stat(certPath); err != nil {
			missing++
		}
		senders = append(senders, config.InitSender{Address: addr, Key: k.URI, Cert: certPath})
	}

	// 4. The rest of the configuration, then the file.
	o.nextHop = p.Ask("next hop (host:port)", o.nextHop)
	o.listen = p.Ask("SMTP listener (host:port)", o.listen)
	o.certsDir = p.Ask("recipient certificates folder", o.certsDir)
	o.roots = p.Ask("trust anchors file", o.roots)
	o.spool = p.Ask("spool directory", o.spool)
	host, _ := os.Hostname()
	file := config.InitFile(config.InitAnswers{Path: o.config, Module: o.module, Token: o.token, PINFile: o.pinFile,
		Listen: o.listen, Hostname: host, NextHop: o.nextHop, Spool: o.spool, Certs: o.certsDir, Roots: o.roots,
		Senders: senders, Date: time.Now()})
	if _, err := config.Parse(file); err != nil {
		return fmt.Errorf("the configuration made from these answers is not valid:\n%w", err)
	}
	if err := p.WriteNew(o.config, file, 0o640); err != nil {
		return err
	}
	tok.Close()

	// 5. Check it, once every sender has a certificate.
	if missing > 0 {
		fmt.Fprintf(p.Out, "\nnext: have your CA sign the CSR(s) in %s, then import the certificates with\n", filepath.Join(cfgDir, "senders"))
		fmt.Fprintf(p.Out, "  appliance init -config %s -cert ADDR=FILE ...\n", o.config)
		return nil
	}
	fmt.Fprintf(p.Out, "\nchecking %s:\n", o.config)
	return runCheckConfig([]string{"-connect", "-config", o.config}, p.Out, p.Out)
}

// importCert checks that file's leaf is for the key labelled label and names addr, stores it
// beside the key on the token and writes the chain to certPath.
func (o *initOptions) importCert(p *tty.Prompter, tok *hsm.Token, addr, label, file, certPath string) error {
	chain, err := directory.LoadSenderChain(file, addr)
	if err != nil {
		return fmt.Errorf("sender %s: %w", addr, err)
	}
	if err := tok.ImportCertificate(bgctx(), label, chain[0]); err != nil {
		return fmt.Errorf("sender %s: %w", addr, err)
	}
	if err := p.WriteNew(certPath, directory.EncodeChain(chain), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "imported %q (expires %s) for %s\n", chain[0].Subject.String(), chain[0].NotAfter.UTC().Format(time.DateOnly), addr)
	return nil
}

// initialiseToken initialises a token labelled o.token on the first free slot with the SO PIN
// from its file, and sets the user PIN: from o.pinFile when it exists, else a random one written
// there (mode 0600).
func (o *initOptions) initialiseToken(p *tty.Prompter) error {
	if o.soPINFile == "" {
		return errors.New("-init-token needs -so-pin-file")
	}
	made, err := hsm.InitTokenFromFiles(o.module, o.token, o.soPINFile, o.pinFile)
	if made {
		fmt.Fprintf(p.Out, "wrote a new random user PIN to %s (mode 0600)\n", o.pinFile)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "initialised token %q on %s\n", o.token, o.module)
	return nil
}
