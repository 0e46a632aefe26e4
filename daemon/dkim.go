package daemon

import (
	"context"
	"crypto"
	"fmt"

	"appliance/config"
	"appliance/dkim"
)

// KeySource finds a key's crypto.Signer by its PKCS#11 URI (the token supervisor).
type KeySource interface {
	Signer(ctx context.Context, keyURI string) (crypto.Signer, error)
}

// NewDKIMSigner is the DKIM signer over every [[dkim]] key, nil when there is none.
func NewDKIMSigner(ctx context.Context, cfg *config.Config, src KeySource) (*dkim.Signer, error) {
	if len(cfg.DKIM) == 0 {
		return nil, nil
	}
	var keys []dkim.Key
	for _, e := range cfg.DKIM {
		s, err := src.Signer(ctx, e.Key)
		if err != nil {
			return nil, fmt.Errorf("dkim key %s (domain %s, selector %s): %w", e.Key, e.Domain, e.Selector, err)
		}
		keys = append(keys, dkim.Key{Domain: e.Domain, Selector: e.Selector, Signer: s})
	}
	return dkim.New(keys)
}
