package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"appliance/compliance"
	"appliance/config"
	"appliance/directory"
	"appliance/journal"
	"appliance/metrics"
	"appliance/pipeline"
	"appliance/seal"
)

// openCompliance builds the DKIM signer, the journal and the audit trail (package compliance).
// The DKIM and audit keys are looked up now (their public halves are needed up front); the
// journal sender's key when a message is sealed.
func openCompliance(ctx context.Context, cfg *config.Config, src KeySource, pipe *pipeline.Pipeline, obs *metrics.Observer, log *slog.Logger) (*compliance.Compliance, error) {
	o := compliance.Options{Log: log}
	if obs != nil {
		o.JournalSealed = obs.JournalSealed
	}
	var err error
	if o.DKIM, err = NewDKIMSigner(ctx, cfg, src); err != nil {
		return nil, err
	}
	if cfg.Journal.Enabled() {
		if o.Journal, err = newJournal(cfg, src, pipe); err != nil {
			return nil, err
		}
	}
	if o.Audit, err = OpenAuditLog(ctx, cfg, src); err != nil {
		return nil, err
	}
	return compliance.New(o), nil
}

func newJournal(cfg *config.Config, src KeySource, pipe *pipeline.Pipeline) (*compliance.Journal, error) {
	jc := cfg.Journal
	s, ok := pipe.SenderFor(jc.Sender)
	if !ok {
		return nil, fmt.Errorf("journal.sender %q is not a [[sender]]", jc.Sender)
	}
	j := &compliance.Journal{KeyURI: s.KeyURI, Keys: src, Wait: jc.Policy == config.JournalWait, Journal: journal.Journal{
		Address: jc.Address, From: s.Address, Hostname: cfg.SMTP.Hostname, Sealer: pipe.Sealer(),
		Sender: seal.Sender{Chain: s.Chain, PSS: s.PSS},
	}}
	for _, f := range jc.Certs {
		certs, err := directory.LoadCertificates(f)
		if err != nil {
			return nil, fmt.Errorf("journal.certs: %w", err)
		}
		if len(certs) == 0 {
			return nil, fmt.Errorf("journal.certs: no certificate in %q", f)
		}
		j.Certs = append(j.Certs, certs...)
	}
	return j, nil
}
