package daemon

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
// are unwrapped through sup: the daemon's supervisor, or the offline commands' tokens.
func setupLists(p *Parts, sup *Tokens) error {
	if len(p.cfg.Lists) == 0 {
		return nil
	}
	ls, err := listsFromConfig(p.cfg)
	if err != nil {
		return err
	}
	if sup == nil {
		return errors.New("failed to set up lists: no token")
	}
	return p.Pipe.SetLists(ls, sup)
}

// reloadLists is the lists' part of SIGHUP: every members file is read again; a file that
// cannot be read keeps the list's previous members.
func reloadLists(p *Parts, log *slog.Logger) {
	if len(p.cfg.Lists) == 0 {
		return
	}
	if err := p.Pipe.Reload(); err != nil {
		log.Error("list members reload failed; keeping the previous members", "component", "lists", "err", err)
		return
	}
	log.Info("list members reloaded", "component", "lists", "lists", len(p.cfg.Lists))
}

// withLists adds the lists' posting rules to the front end's policy (smtpfront.ListPolicy) when
// lists are configured, refusing a poster with a text that names only the list; without lists
// the policy is returned as it is, so the front end behaves exactly as before.
func withLists(cfg *config.Config, pipe *pipeline.Pipeline, next smtpfront.Policy) smtpfront.Policy {
	if len(cfg.Lists) == 0 {
		return next
	}
	return smtpfront.WithLists(next, pipe.IsList, func(ctx context.Context, list, mailFrom string) error {
		err := pipe.CheckPoster(ctx, list, mailFrom)
		if errors.Is(err, lists.ErrNotPoster) {
			return &smtpfront.PolicyError{Text: "not allowed to post to <" + list + ">", Err: err}
		}
		return err
	})
}
