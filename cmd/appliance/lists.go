package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"appliance/config"
	"appliance/directory"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/smtpfront"
)

// listsFromConfig turns the [[list]] tables into the pipeline's lists, loading each list's
// certificate chain (leaf first).
func listsFromConfig(cfg *config.Config) ([]lists.List, error) {
	out := make([]lists.List, 0, len(cfg.Lists))
	for _, l := range cfg.Lists {
		chain, err := directory.LoadChain(l.Cert)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", l.Address, err)
		}
		pl := lists.List{Address: l.Address, KeyURI: l.Key, Chain: chain, MembersFile: l.MembersFile}
		switch {
		case l.Posters.Addresses != nil:
			pl.Posters.Addresses = append([]string(nil), l.Posters.Addresses...)
		case l.Posters.Kind == config.PostersAnyone:
			pl.Posters.Anyone = true
		default:
			pl.Posters.Members = true
		}
		out = append(out, pl)
	}
	return out, nil
}

// setupLists gives p's pipeline the configured lists. Content keys of mail encrypted to a list
// are unwrapped through sup when the daemon supervises the token, else through p.token.
func setupLists(p *parts, sup *tokenSupervisor) error {
	if len(p.cfg.Lists) == 0 {
		return nil
	}
	ls, err := listsFromConfig(p.cfg)
	if err != nil {
		return err
	}
	var tok lists.ListToken
	switch {
	case sup != nil:
		tok = sup
	default:
		return errors.New("failed to set up lists: no token")
	}
	return p.pipe.SetLists(ls, tok)
}

// reloadLists is the lists' part of SIGHUP: every members file is read again; a file that
// cannot be read keeps the list's previous members.
func reloadLists(p *parts, log *slog.Logger) {
	if len(p.cfg.Lists) == 0 {
		return
	}
	if err := p.pipe.Reload(); err != nil {
		log.Error("list members reload failed; keeping the previous members", "component", "lists", "err", err)
		return
	}
	log.Info("list members reloaded", "component", "lists", "lists", len(p.cfg.Lists))
}

// withLists adds the lists' posting rules to the front end's policy (smtpfront.ListPolicy) when
// lists are configured; without lists the policy is returned as it is, so the front end behaves
// exactly as before.
func withLists(cfg *config.Config, pipe *pipeline.Pipeline, next smtpfront.Policy) smtpfront.Policy {
	if len(cfg.Lists) == 0 {
		return next
	}
	return listFrontPolicy{Policy: next, pipe: pipe}
}

type listFrontPolicy struct {
	smtpfront.Policy
	pipe *pipeline.Pipeline
}

var _ smtpfront.ListPolicy = listFrontPolicy{}

func (l listFrontPolicy) IsList(addr string) bool { return l.pipe.IsList(addr) }

// CheckPoster refuses with a text that names only the list.
func (l listFrontPolicy) CheckPoster(ctx context.Context, list, mailFrom string) error {
	err := l.pipe.CheckPoster(ctx, list, mailFrom)
	if errors.Is(err, lists.ErrNotPoster) {
		return &smtpfront.PolicyError{Text: "not allowed to post to <" + list + ">", Err: err}
	}
	return err
}
