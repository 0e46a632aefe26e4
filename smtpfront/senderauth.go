package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
)

// AuthorizeFunc says whether the client at ip, authenticated as authUser ("" for nobody), may
// use sender. An error wrapping [ErrAuthRequired] is answered 530 5.7.0 (nobody to authorize);
// any other error is a sender refused, 550 5.7.1.
type AuthorizeFunc func(ip netip.Addr, authUser, sender string) error

// WithSenderAuth puts authorize in front of next: a sender must be both the client's to use
// and one next accepts. When next is a [ListPolicy] the result is one too, and a post to a list
// is authorized the same way: the list signs it, so the poster need not be a sender next
// accepts, but it must still be an address the client may use (a posting rule that trusts MAIL
// FROM would otherwise trust whatever anyone typed), and an anonymous client from an untrusted
// network may not make the appliance sign and fan out anything, list or not.
func WithSenderAuth(next Policy, authorize AuthorizeFunc) Policy {
	p := authPolicy{next: next, authorize: authorize}
	if lp, ok := next.(ListPolicy); ok {
		return authListPolicy{authPolicy: p, lists: lp}
	}
	return p
}

type authPolicy struct {
	next      Policy
	authorize AuthorizeFunc
}

func (p authPolicy) CheckSender(ctx context.Context, addr, authUser string) error {
	if err := p.check(ctx, addr, authUser); err != nil {
		return err
	}
	return p.next.CheckSender(ctx, addr, authUser)
}

func (p authPolicy) check(ctx context.Context, addr, authUser string) error {
	ip, _ := ClientAddr(ctx)
	err := p.authorize(ip, authUser, addr)
	if err != nil && !errors.Is(err, ErrAuthRequired) {
		return fmt.Errorf("%w: %w", ErrSenderRefused, err)
	}
	return err
}

func (p authPolicy) CheckRecipient(ctx context.Context, rcpt string) error {
	return p.next.CheckRecipient(ctx, rcpt)
}

type authListPolicy struct {
	authPolicy
	lists ListPolicy
}

func (p authListPolicy) IsList(addr string) bool { return p.lists.IsList(addr) }

func (p authListPolicy) CheckPoster(ctx context.Context, list, mailFrom string) error {
	if err := p.check(ctx, mailFrom, AuthUser(ctx)); err != nil {
		return fmt.Errorf("failed to accept a post to %q: %w", list, err)
	}
	return p.lists.CheckPoster(ctx, list, mailFrom)
}
