package smtpfront

import "context"

// WithLists makes next a [ListPolicy] whose lists are those isList reports and whose posting
// rule is checkPoster (errors mapped like CheckSender's).
func WithLists(next Policy, isList func(addr string) bool, checkPoster func(ctx context.Context, list, mailFrom string) error) Policy {
	return listsPolicy{Policy: next, isList: isList, checkPoster: checkPoster}
}

type listsPolicy struct {
	Policy
	isList      func(string) bool
	checkPoster func(context.Context, string, string) error
}

func (l listsPolicy) IsList(addr string) bool { return l.isList(addr) }

func (l listsPolicy) CheckPoster(ctx context.Context, list, mailFrom string) error {
	return l.checkPoster(ctx, list, mailFrom)
}
