package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"appliance/config"
	"appliance/directory"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smime"
	"appliance/smtpfront"
	"appliance/split"
)

// Parts are the long-lived pieces both serve and seal build from one configuration.
type Parts struct {
	cfg    *config.Config
	tokens *Tokens // the offline commands' tokens; serve's belong to serve
	Dir    *directory.Directory
	Pipe   *pipeline.Pipeline
}

func (p *Parts) Close() {
	if p.tokens != nil {
		p.tokens.Close()
	}
}

// OpenParts builds the Parts for the offline commands, with the tokens opened directly: they have
// nothing to defer, so a missing token is an error there.
func OpenParts(cfg *config.Config, log *slog.Logger) (*Parts, error) {
	return openPartsWith(cfg, log, nil)
}

// openPartsWith builds the Parts around sup when given (serve: tokens may come and go), else
// around tokens opened here (offline commands: no token, no work).
// with change the pipeline's options before it is made (metrics.Observer subscribes to its
// events and meters its token), in order.
func openPartsWith(cfg *config.Config, log *slog.Logger, sup *Tokens, with ...func(*pipeline.Options)) (*Parts, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Parts{cfg: cfg}
	dir, err := OpenDirectory(cfg)
	if err != nil {
		return nil, err
	}
	p.Dir = dir

	var senders []pipeline.Sender
	for _, s := range cfg.Senders {
		chain, err := directory.LoadCertificates(s.Cert)
		if err != nil {
			return nil, fmt.Errorf("sender %q: %w", s.Address, err)
		}
		if len(chain) == 0 {
			return nil, fmt.Errorf("sender %q: no certificate in %q", s.Address, s.Cert)
		}
		senders = append(senders, pipeline.Sender{Address: s.Address, KeyURI: s.Key, Chain: chain})
	}

	if sup == nil {
		t, err := OpenTokens(cfg)
		if err != nil {
			return nil, err
		}
		p.tokens, sup = t, t
	}
	opts := pipeline.Options{
		Directory:       dir,
		Token:           sup,
		Senders:         senders,
		Policy:          SplitPolicy(cfg),
		SKI:             skiPolicy(cfg),
		PassThrough:     PassThroughPolicy(cfg),
		Hostname:        cfg.SMTP.Hostname,
		MaxMessageBytes: cfg.SMTP.MaxMessageBytes,
		Limits:          Limits(cfg),
		Budget:          pipeline.NewBudget(cfg.Queue.MemoryBytes),
		Logger:          log.With("component", "seal"),
	}
	for _, f := range with {
		f(&opts)
	}
	pipe, err := pipeline.New(opts)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.Pipe = pipe
	if err := setupLists(p, sup); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// SplitPolicy is split's policy from [policy] and [directory].
func SplitPolicy(cfg *config.Config) split.Policy {
	p := split.Policy{
		SelfCopy:               cfg.Policy.SelfCopy,
		KeepBcc:                cfg.Policy.BccHeader == config.BccHeaderOwn,
		CaseSensitiveLocalPart: cfg.Directory.CaseSensitiveLocalPart,
		Profile:                cfg.Policy.Profile,
		DomainProfiles:         map[string]string{},
		HeaderProtection:       split.HeaderProtection{On: cfg.Policy.HeaderProtection, Domains: cfg.Policy.HeaderProtectionDomains()},
	}
	if cfg.Policy.Bcc == config.BccGroup {
		p.Bcc = split.Group
	}
	switch cfg.Policy.MissingCert {
	case config.MissingCertPlaintext:
		p.MissingCert = split.Plaintext
	case config.MissingCertDrop:
		p.MissingCert = split.Drop
	}
	if cfg.Policy.CertChoice == config.CertChoiceNewest {
		p.CertChoice = split.Newest
	}
	for _, d := range cfg.Policy.Domains {
		if d.Profile != "" {
			p.DomainProfiles[strings.ToLower(d.Domain)] = d.Profile
		}
	}
	return p
}

func skiPolicy(cfg *config.Config) func(owner string) bool {
	return func(owner string) bool {
		_, domain, _ := strings.Cut(owner, "@")
		return cfg.Policy.ForDomain(domain).RID == config.RIDSKI
	}
}

// frontPolicy turns the pipeline's answers into the front end's refusals, with texts that name
// only the address concerned.
type frontPolicy struct{ pipe *pipeline.Pipeline }

func (f frontPolicy) CheckSender(ctx context.Context, addr, _ string) error {
	if err := f.pipe.CheckSender(ctx, addr); err != nil {
		return &smtpfront.PolicyError{Text: "sender not authorized to send through this relay", Err: err}
	}
	return nil
}

func (f frontPolicy) CheckRecipient(ctx context.Context, rcpt string) error {
	err := f.pipe.CheckRecipient(ctx, rcpt)
	if errors.Is(err, pipeline.ErrNoCertificate) {
		return &smtpfront.PolicyError{Text: "no valid S/MIME certificate for <" + rcpt + ">", Err: err}
	}
	return err
}

// frontSpool gives the front end the queue's refusals in the front end's terms.
type frontSpool struct{ q *queue.Queue }

func (f frontSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	id, err := f.q.Accept(ctx, env, body)
	return id, frontErr(err)
}

// Stage writes a message to the spool for the check at end of DATA (checkMessages).
func (f frontSpool) Stage(ctx context.Context, env queue.Envelope, body io.Reader) (smtpfront.StagedMessage, error) {
	st, err := f.q.Stage(ctx, env, body)
	if err != nil {
		return nil, frontErr(err)
	}
	return frontStaged{st}, nil
}

type frontStaged struct{ *queue.Staged }

func (s frontStaged) Commit(class string) (string, error) {
	id, err := s.Staged.Commit(class)
	return id, frontErr(err)
}

func frontErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, queue.ErrSpoolUnavailable):
		return fmt.Errorf("%w: %w", smtpfront.ErrSpoolFull, err)
	case errors.Is(err, queue.ErrMessageTooBig):
		return fmt.Errorf("%w: %w", smtpfront.ErrMessageTooBig, err)
	case errors.Is(err, queue.ErrClosed):
		return fmt.Errorf("%w: %w", smtpfront.ErrTemporary, err)
	}
	return err
}

// Limits are the message limits of [smtp], as the SMTP door applies them (seal applies them too).
func Limits(cfg *config.Config) smime.Limits {
	return smime.Limits{MaxLineLength: cfg.SMTP.MaxLineLength, MaxHeaderBytes: cfg.SMTP.MaxHeaderBytes, MaxHeaderFields: cfg.SMTP.MaxHeaderFields}
}
