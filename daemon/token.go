package daemon

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"appliance/cms"
	"appliance/config"
	"appliance/hsm"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/smtpfront"
)

// The daemon's tokens are an hsm.Supervisor: one watch per configured token (reconnection,
// probing, health), keys routed to their token, content keys from the content token, failover to
// a standby. This file builds it from the configuration and fits it to the pipeline.

// Tokens is the hsm.Supervisor as the pipeline's Token and ListToken: content keys are
// cms.ContentKeys, and a wrapped key the token refuses is the message's fault
// (lists.ErrWrappedKey).
type Tokens struct{ *hsm.Supervisor }

var (
	_ pipeline.Token  = (*Tokens)(nil)
	_ lists.ListToken = (*Tokens)(nil)
)

// NewContentKey makes a content key on the content token (pipeline.Token). A failure returns a
// nil interface, not a nil *hsm.SupervisedKey inside one.
func (s *Tokens) NewContentKey(ctx context.Context) (cms.ContentKey, error) {
	k, err := s.ContentKey(ctx)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// UnwrapCEK unwraps a list's content key on the token of the list's key (lists.ListToken). A
// wrapped key the token refuses, or wrapped with an OAEP hash it lacks, is the message's fault.
func (s *Tokens) UnwrapCEK(ctx context.Context, keyURI string, wrapped []byte, oaepHash crypto.Hash) (cms.ContentKey, error) {
	k, err := s.Supervisor.UnwrapCEK(ctx, keyURI, wrapped, oaepHash)
	if errors.Is(err, hsm.ErrUnwrap) || errors.Is(err, hsm.ErrOAEPHash) {
		return nil, fmt.Errorf("%w: %w", lists.ErrWrappedKey, err)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

// UnwrapAgreedCEK unwraps the content key of a post to an EC list key (lists.KeyAgreeToken),
// sorting errors as UnwrapCEK does.
func (s *Tokens) UnwrapAgreedCEK(ctx context.Context, keyURI string, ka *cms.KeyAgreement) (cms.ContentKey, error) {
	k, err := s.Supervisor.UnwrapAgreedCEK(ctx, keyURI, hsm.KeyAgreement{OriginatorKey: ka.OriginatorKey,
		Hash: ka.Hash, SharedInfo: ka.SharedInfo, KEKSize: ka.KEKSize, Wrapped: ka.EncryptedKey})
	if errors.Is(err, hsm.ErrUnwrap) {
		return nil, fmt.Errorf("%w: %w", lists.ErrWrappedKey, err)
	}
	if err != nil {
		return nil, err
	}
	return k, nil
}

var _ lists.KeyAgreeToken = (*Tokens)(nil)

var _ cms.ContentKey = (*hsm.SupervisedKey)(nil)

// policyFor is the front end's policy for cfg: under hsm.require_up, MAIL gets 451 4.3.0 while
// the token is down.
func policyFor(cfg *config.Config, sup *Tokens, f frontPolicy) smtpfront.Policy {
	if cfg.HSM.RequireUp {
		return smtpfront.RequireHealthy(f, sup.Healthy)
	}
	return f
}

// TokenConfig is the hsm.Config of the configured token t.
func TokenConfig(cfg *config.Config, t config.Token) (hsm.Config, error) {
	pin, err := cfg.TokenPIN(t.Name)
	if err != nil {
		return hsm.Config{}, err
	}
	u, err := hsm.ParseURI(t.URI)
	if err != nil {
		return hsm.Config{}, err
	}
	roles, err := hsm.ParseRoles(t.Roles)
	if err != nil {
		return hsm.Config{}, err
	}
	return hsm.Config{Module: t.Module, Select: u, Name: t.Name, Roles: roles, PIN: pin,
		MaxSessions: t.MaxSessions, PoolTimeout: 30 * time.Second}, nil
}

// startTokenSupervisor opens every configured token under a watch. A PIN that cannot be read, a
// token lacking a mechanism its roles or keys need, or (unless hsm.wait_for_token) a token the
// module does not have, is a configuration error and stops the start; a token that fails in
// another way is waited for.
func startTokenSupervisor(cfg *config.Config, log *slog.Logger) (*Tokens, error) {
	return newTokenSetWith(cfg, log, hsm.SupervisorOptions{FailMissing: !cfg.HSM.WaitForToken})
}

// OpenTokens opens every configured token for the offline commands: they have nothing to defer,
// so a missing token is an error there.
func OpenTokens(cfg *config.Config) (*Tokens, error) {
	return newTokenSet(cfg, nil, true)
}

func newTokenSet(cfg *config.Config, log *slog.Logger, strict bool) (*Tokens, error) {
	return newTokenSetWith(cfg, log, hsm.SupervisorOptions{Strict: strict})
}

// newTokenSetWith builds the supervisor's tokens, routes and content tokens from cfg into o.
func newTokenSetWith(cfg *config.Config, log *slog.Logger, o hsm.SupervisorOptions) (*Tokens, error) {
	// Keys by token, so that each watch probes with one of its own keys and start can check that
	// the token signs with every key's mechanism.
	keys := cfg.KeysByToken()
	for _, t := range cfg.TokenList() {
		hc, err := TokenConfig(cfg, t)
		if err != nil {
			return nil, err
		}
		o.Tokens = append(o.Tokens, hsm.TokenSpec{Config: hc, Standby: t.Standby, Keys: keys[t.Name]})
	}
	o.Route = func(keyURI string) (string, error) { return cfg.TokenFor(keyURI, config.RoleSign) }
	o.Content, o.Fallback = cfg.ContentTokens()
	if o.MaxWait == 0 {
		o.MaxWait = cfg.HSM.ReconnectWait()
	}
	o.Log = log
	s, err := hsm.NewSupervisor(o)
	if err != nil {
		return nil, err
	}
	return &Tokens{s}, nil
}
