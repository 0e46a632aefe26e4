package smtpfront

import (
	"context"
	"fmt"
)

// RequireHealthy puts a health check in front of next's sender check: while healthy reports an
// error (the HSM is down), MAIL gets 451 4.3.0 instead of mail that could only wait in the
// spool. Every other check is next's.
func RequireHealthy(next Policy, healthy func() error) Policy {
	return healthGate{Policy: next, healthy: healthy}
}

type healthGate struct {
	Policy
	healthy func() error
}

func (g healthGate) CheckSender(ctx context.Context, addr, authUser string) error {
	if err := g.healthy(); err != nil {
		return fmt.Errorf("%w: %w", ErrTemporary, err)
	}
	return g.Policy.CheckSender(ctx, addr, authUser)
}
