package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
)

type listTestPolicy struct{ *testPolicy }

func (listTestPolicy) IsList(addr string) bool                           { return addr == "list@example.test" }
func (listTestPolicy) CheckPoster(context.Context, string, string) error { return nil }

func TestWithSenderAuth(t *testing.T) {
	// The trusted network 10/8 may use alice; user bob may use bob; nobody else anything.
	authorize := func(ip netip.Addr, user, sender string) error {
		switch {
		case user == "bob" && sender == "bob@example.test",
			user == "" && netip.MustParsePrefix("10.0.0.0/8").Contains(ip) && sender == "alice@example.test":
			return nil
		case user == "" && !netip.MustParsePrefix("10.0.0.0/8").Contains(ip):
			return fmt.Errorf("%w: who are you", ErrAuthRequired)
		}
		return errors.New("not yours")
	}
	ctxFrom := func(a string) context.Context {
		return WithClientAddr(context.Background(), netip.MustParseAddr(a))
	}
	p := WithSenderAuth(newTestPolicy(), authorize)
	for _, tt := range []struct {
		client, user, sender string
		want                 int // reply code, 0 accepted
	}{
		{"10.1.1.1", "", "alice@example.test", 0},
		{"10.1.1.1", "", "bob@example.test", 550},
		{"192.0.2.1", "", "alice@example.test", 530},
		{"192.0.2.1", "bob", "bob@example.test", 550}, // bob's own, but the next policy has no key for it
		{"192.0.2.1", "bob", "alice@example.test", 550},
	} {
		got := 0
		if r := Reply(StageMail, p.CheckSender(ctxFrom(tt.client), tt.sender, tt.user)); r != nil {
			got = r.Code
		}
		if got != tt.want {
			t.Errorf("%s %q as %q: %d, want %d", tt.client, tt.user, tt.sender, got, tt.want)
		}
	}
	if _, ok := p.(ListPolicy); ok {
		t.Error("a policy without lists grew a ListPolicy")
	}
	lp, ok := WithSenderAuth(listTestPolicy{newTestPolicy()}, authorize).(ListPolicy)
	if !ok {
		t.Fatal("the list-posting path was hidden by the wrapper")
	}
	if err := lp.CheckPoster(ctxFrom("192.0.2.1"), "list@example.test", "x@example.net"); !errors.Is(err, ErrAuthRequired) {
		t.Errorf("anonymous outsider posting to a list: %v, want ErrAuthRequired", err)
	}
	if err := lp.CheckPoster(ctxFrom("10.9.9.9"), "list@example.test", "alice@example.test"); err != nil {
		t.Errorf("trusted host posting to a list as its sender: %v", err)
	}
	if err := lp.CheckPoster(ctxFrom("10.9.9.9"), "list@example.test", "x@example.net"); !errors.Is(err, ErrSenderRefused) {
		t.Errorf("trusted host posting to a list as a stranger: %v, want ErrSenderRefused", err)
	}
}

func TestWithLists(t *testing.T) {
	refused := errors.New("not a member")
	lp, ok := WithLists(newTestPolicy(), func(a string) bool { return a == "list@example.test" },
		func(_ context.Context, list, from string) error {
			if from != "member@example.test" {
				return &PolicyError{Text: "not allowed to post to <" + list + ">", Err: refused}
			}
			return nil
		}).(ListPolicy)
	if !ok {
		t.Fatal("not a ListPolicy")
	}
	if !lp.IsList("list@example.test") || lp.IsList("alice@example.test") {
		t.Error("IsList is not the one given")
	}
	if err := lp.CheckPoster(context.Background(), "list@example.test", "member@example.test"); err != nil {
		t.Errorf("member: %v", err)
	}
	r := Reply(StageRcpt, lp.CheckPoster(context.Background(), "list@example.test", "x@example.net"))
	if r == nil || r.Code != 550 || r.Message != "not allowed to post to <list@example.test>" {
		t.Errorf("outsider: %v", r)
	}
	if err := lp.(Policy).CheckSender(context.Background(), "alice@example.test", ""); err != nil {
		t.Errorf("the sender check is next's: %v", err)
	}
}
