package daemon

import (
	"context"
	"fmt"

	"appliance/audit"
	"appliance/config"
)

// OpenAuditLog opens the [audit] trail, its heads signed by audit.key through src (the token
// supervisor); nil when no trail is configured. The daemon closes it last, after the queue has
// stopped, so that the final file is sealed.
func OpenAuditLog(ctx context.Context, cfg *config.Config, src KeySource) (*audit.Log, error) {
	a := cfg.Audit
	if !a.Enabled() {
		return nil, nil
	}
	opts := audit.Options{Dir: a.Dir, MaxBytes: a.MaxBytes, MaxAge: a.MaxAge}
	if a.Key != "" {
		s, err := src.Signer(ctx, a.Key)
		if err != nil {
			return nil, fmt.Errorf("audit.key %s: %w", a.Key, err)
		}
		opts.Signer = s
	}
	return audit.Open(opts)
}
