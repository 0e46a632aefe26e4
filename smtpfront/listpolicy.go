package smtpfront

import (
	"context"
	"fmt"
)

// ListPolicy is an optional extension of [Policy] for mail lists the appliance expands itself
// (README, Secure mailing lists). Posts to such a list are signed by the list, not by the poster, so the
// list's posting rule decides who may send to it, and the poster need not be a configured
// sender. When the Policy implements ListPolicy:
//
//   - a MAIL FROM that CheckSender refuses (5xx) is not refused at once: the refusal is held and
//     given to every RCPT that is not a list, so a transaction can still go to lists;
//   - every RCPT to a list is asked of CheckPoster, whatever CheckSender said;
//   - a message whose recipients are all lists skips the header From/Sender check, since nothing
//     is signed as those identities.
//
// Every transaction with a recipient that is not a list is judged exactly as without it.
type ListPolicy interface {
	// IsList reports whether addr (domain folded to lower case) is an expanded list.
	IsList(addr string) bool
	// CheckPoster refuses a mailFrom ("" for the null sender) that may not post to list; errors
	// are mapped like CheckSender's.
	CheckPoster(ctx context.Context, list, mailFrom string) error
}

// deferSender holds a refused MAIL FROM for the RCPTs to judge when lists can be posted to from
// outside; it reports whether it did. Temporary failures are never held.
func (ss *session) deferSender(err error) bool {
	if _, ok := ss.s.policy.(ListPolicy); !ok {
		return false
	}
	if r := Reply(StageMail, err); r == nil || r.Code < 500 {
		return false
	}
	ss.senderErr = err
	return true
}

// checkListRcpt asks the list's posting rule about a RCPT to a list, and gives any other RCPT
// the held sender refusal.
func (ss *session) checkListRcpt(to string) error {
	lp, ok := ss.s.policy.(ListPolicy)
	if !ok {
		return nil
	}
	if lp.IsList(to) {
		if err := lp.CheckPoster(ss.ctx, to, ss.mailFrom); err != nil {
			return fmt.Errorf("failed to check poster %q to list %q: %w", ss.mailFrom, to, err)
		}
		return nil
	}
	return ss.senderErr
}

// allLists reports whether every recipient is an expanded list.
func (ss *session) allLists(rcpts []string) bool {
	lp, ok := ss.s.policy.(ListPolicy)
	if !ok || len(rcpts) == 0 {
		return false
	}
	for _, r := range rcpts {
		if !lp.IsList(r) {
			return false
		}
	}
	return true
}
