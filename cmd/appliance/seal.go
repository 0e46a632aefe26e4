package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"appliance/daemon"
	"appliance/directory"
	"appliance/internal/tty"
	"appliance/queue"
	"appliance/smime"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// manifestEntry is one element of DIR/manifest.json: a package (File, with the envelope it is
// delivered with) or a refusal (Refused, naming the one recipient in RcptTo that gets nothing).
type manifestEntry struct {
	File     string   `json:"file,omitempty"`
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
	Refused  *refusal `json:"refused,omitempty"`
}

type refusal struct {
	Status string `json:"status"` // enhanced status code, e.g. "5.7.1"
	Reason string `json:"reason"`
}

// exitRefused is seal's exit status when the message was sealed but at least one recipient
// got no package (each is in manifest.json with its reason); 0 means every recipient got one.
const exitRefused = 3

// errRefused: some recipients were refused; run exits with exitRefused.
var errRefused = errors.New("recipients refused")

func bgctx() context.Context { return context.Background() }

const sealSynopsis = `-config FILE -from ADDR -rcpt ADDR [-rcpt ADDR ...] -out DIR [-force] < message.eml

Seals one message read from stdin as serve would, and writes each package to DIR as 001.eml,
002.eml, ... with DIR/manifest.json listing every package's envelope and every refused recipient
with its reason. DIR must be empty or new unless -force, which removes the packages and manifest
of an earlier run first.

Exit status: 0 every recipient got a package; 3 the message was sealed but at least one
recipient was refused (see manifest.json); 2 wrong usage; 1 any other error (nothing sealed).`

func runSeal(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("seal", sealSynopsis, stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	from := fs.String("from", "", "envelope sender: a configured [[sender]], whose certificate must cover the From header")
	out := fs.String("out", "", "directory for the packages and manifest.json (empty or new, unless -force)")
	force := fs.Bool("force", false, "replace the packages and manifest.json already in -out")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeat for each)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError(fs, "unexpected argument %q (the message is read from stdin)", tty.Escape(fs.Arg(0)))
	case *cfgPath == "":
		return usageError(fs, "missing -config FILE")
	case *from == "":
		return usageError(fs, "missing -from ADDR, the envelope sender")
	case len(rcpts) == 0:
		return usageError(fs, "missing -rcpt ADDR, at least one envelope recipient")
	case *out == "":
		return usageError(fs, "missing -out DIR, where the packages go")
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	stale, err := checkOutDir(*out, *force)
	if err != nil {
		return err
	}
	sender, ok := cfg.Sender(*from)
	if !ok {
		return fmt.Errorf("-from %q is not a configured [[sender]]", tty.Escape(*from))
	}
	msg, err := io.ReadAll(io.LimitReader(os.Stdin, cfg.SMTP.MaxMessageBytes+1))
	if err != nil {
		return fmt.Errorf("failed to read message: %w", err)
	}
	if int64(len(msg)) > cfg.SMTP.MaxMessageBytes {
		return fmt.Errorf("message exceeds smtp.max_message_bytes (%d)", cfg.SMTP.MaxMessageBytes)
	}
	if len(bytes.TrimSpace(msg)) == 0 {
		return errors.New("empty message on stdin: nothing to seal")
	}
	chain, err := directory.LoadChain(sender.Cert)
	if err != nil {
		return fmt.Errorf("sender %q: %w", sender.Address, err)
	}
	// The From check reads the header as the pipeline will: normalised the one way both doors
	// normalise (smime.Normalize; Process runs it again, to the same bytes).
	norm, _, err := smime.Normalize(msg, daemon.Limits(cfg))
	if err != nil {
		return err
	}
	if err := checkFromCovered(norm, sender.Address, chain[0]); err != nil {
		return err
	}

	p, err := daemon.OpenParts(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer p.Close()
	env := queue.Envelope{MailFrom: *from, RcptTo: rcpts, Helo: "localhost", ReceivedAt: time.Now()}
	if err := p.Pipe.CheckSender(bgctx(), *from); err != nil {
		return err
	}
	sealed, err := p.Pipe.Process(bgctx(), "seal-"+time.Now().UTC().Format("20060102T150405"), env, bytes.NewReader(msg))
	if err != nil {
		return err
	}
	// Only now, with new packages to put in their place, go the old ones.
	for _, name := range stale {
		if err := os.Remove(filepath.Join(*out, name)); err != nil {
			return fmt.Errorf("failed to remove the earlier run's %q: %w", name, err)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	manifest := []manifestEntry{}
	for i, pk := range sealed.Packages {
		name := fmt.Sprintf("%03d.eml", i+1)
		if err := writeFile(filepath.Join(*out, name), pk.Body); err != nil {
			return err
		}
		manifest = append(manifest, manifestEntry{File: name, MailFrom: pk.MailFrom, RcptTo: pk.RcptTo})
	}
	for _, r := range sealed.Refused {
		manifest = append(manifest, manifestEntry{MailFrom: *from, RcptTo: []string{r.Recipient},
			Refused: &refusal{Status: r.Status, Reason: r.Reason}})
		fmt.Fprintf(stderr, "refused <%s>: %s %s\n", tty.Escape(r.Recipient), tty.Escape(r.Status), tty.Escape(r.Reason))
	}
	b, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d package(s) written to %s\n", len(sealed.Packages), tty.Escape(*out))
	if len(sealed.Refused) > 0 {
		return fmt.Errorf("%w: %d of %d recipient(s) got no package; see %s", errRefused,
			len(sealed.Refused), len(rcpts), tty.Escape(filepath.Join(*out, "manifest.json")))
	}
	return nil
}

var packageName = regexp.MustCompile(`^[0-9]{3,}\.eml$`)

// checkOutDir refuses a directory that holds anything unless force, so packages of two runs are
// never mixed; with force it returns the earlier run's files to remove (its packages and
// manifest) and refuses anything else in it.
func checkOutDir(dir string, force bool) (stale []string, err error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("-out %q: %w", tty.Escape(dir), err)
	case len(entries) == 0:
		return nil, nil
	case !force:
		return nil, fmt.Errorf("-out %q is not empty (%d entries); use -force to replace an earlier run's packages", tty.Escape(dir), len(entries))
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || (e.Name() != "manifest.json" && !packageName.MatchString(e.Name())) {
			return nil, fmt.Errorf("-out %q holds %q, which is not a package of an earlier run; -force replaces only those", tty.Escape(dir), tty.Escape(e.Name()))
		}
		stale = append(stale, e.Name())
	}
	return stale, nil
}

// checkFromCovered refuses a message whose From (or Sender) names an address the sender's
// certificate does not hold.
func checkFromCovered(msg []byte, sender string, leaf *x509.Certificate) error {
	a, err := directory.UncoveredSender(msg, leaf)
	if err != nil || a == "" {
		return err
	}
	have := "none"
	if names := directory.CertAddresses(leaf); len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	return fmt.Errorf("the message's header names <%s>, which the certificate of sender %q does not cover (its addresses: %s); set From to a covered address or use that address's [[sender]]",
		tty.Escape(a), sender, tty.Escape(have))
}

func writeFile(path string, body io.WriterTo) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := body.WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return f.Close()
}
