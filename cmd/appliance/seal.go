package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"appliance/queue"
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// manifestEntry is one line of DIR/manifest.json (DESIGN section 10).
type manifestEntry struct {
	File     string   `json:"file"`
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
}

func bgctx() context.Context { return context.Background() }

func runSeal(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("seal", "-config FILE -from ADDR -rcpt ADDR [-rcpt ADDR ...] -out DIR < message.eml", stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML)")
	from := fs.String("from", "", "envelope sender (a configured [[sender]])")
	out := fs.String("out", "", "directory for the packages and manifest.json")
	var rcpts stringList
	fs.Var(&rcpts, "rcpt", "envelope recipient (repeat)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || len(rcpts) == 0 || *out == "" {
		fs.Usage()
		return errUsage
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	msg, err := io.ReadAll(io.LimitReader(os.Stdin, cfg.SMTP.MaxMessageBytes+1))
	if err != nil {
		return fmt.Errorf("failed to read message: %w", err)
	}
	if int64(len(msg)) > cfg.SMTP.MaxMessageBytes {
		return fmt.Errorf("message exceeds smtp.max_message_bytes (%d)", cfg.SMTP.MaxMessageBytes)
	}
	p, err := openParts(cfg, newLogger(cfg, stderr))
	if err != nil {
		return err
	}
	defer p.Close()

	env := queue.Envelope{MailFrom: *from, RcptTo: rcpts, Helo: "localhost", ReceivedAt: time.Now()}
	if err := p.pipe.CheckSender(bgctx(), *from); err != nil {
		return err
	}
	sealed, err := p.pipe.Process(bgctx(), "seal-"+time.Now().UTC().Format("20060102T150405"), env, strings.NewReader(string(msg)))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	var manifest []manifestEntry
	for i, pk := range sealed.Packages {
		name := fmt.Sprintf("%03d.eml", i+1)
		if err := writeFile(filepath.Join(*out, name), pk.Body); err != nil {
			return err
		}
		manifest = append(manifest, manifestEntry{File: name, MailFrom: pk.MailFrom, RcptTo: pk.RcptTo})
	}
	for _, r := range sealed.Refused {
		fmt.Fprintf(stderr, "refused <%s>: %s %s\n", r.Recipient, r.Status, r.Reason)
	}
	if manifest == nil {
		manifest = []manifestEntry{}
	}
	b, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d package(s) written to %s\n", len(manifest), *out)
	return nil
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
