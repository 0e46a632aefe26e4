package auth

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
)

// Live is the Authorizer in force, which Reload replaces (on SIGHUP): checks in flight keep the
// one they started with, new checks see the new one, and one that fails to load leaves the
// previous one in force.
type Live struct {
	load func() (*Authorizer, error)
	cur  atomic.Pointer[Authorizer]
}

// NewLive loads the first Authorizer with load, which Reload calls again.
func NewLive(load func() (*Authorizer, error)) (*Live, error) {
	l := &Live{load: load}
	a, err := load()
	if err != nil {
		return nil, err
	}
	l.cur.Store(a)
	return l, nil
}

// Reload loads the Authorizer again and returns the number of users now in force; on error the
// previous one stays.
func (l *Live) Reload() (int, error) {
	a, err := l.load()
	if err != nil {
		return 0, err
	}
	l.cur.Store(a)
	if a.Users == nil {
		return 0, nil
	}
	return a.Users.Len(), nil
}

// Authenticate checks against the users in force.
func (l *Live) Authenticate(ctx context.Context, user, password string) error {
	u := l.cur.Load().Users
	if u == nil {
		return fmt.Errorf("failed to authenticate %q: %w", user, ErrBadCredentials)
	}
	return u.Authenticate(ctx, user, password)
}

// KnownUser reports whether name is a user in force, so that a failed AUTH is logged with the
// name of real users only.
func (l *Live) KnownUser(name string) bool {
	u := l.cur.Load().Users
	if u == nil {
		return false
	}
	_, ok := u.Lookup(name)
	return ok
}

// Authorize is [Authorizer.Authorize] of the Authorizer in force.
func (l *Live) Authorize(ip netip.Addr, authUser, sender string) error {
	return l.cur.Load().Authorize(ip, authUser, sender)
}
