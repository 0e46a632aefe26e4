package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"appliance/config"
	"appliance/smtpfront"
)

// nextPolicy stands for the pipeline's check: only alice has a key.
type nextPolicy struct{}

func (nextPolicy) CheckSender(_ context.Context, addr, _ string) error {
	if addr != "alice@example.test" {
		return &smtpfront.PolicyError{Text: "sender not authorized to send through this relay"}
	}
	return nil
}

func (nextPolicy) CheckRecipient(context.Context, string) error { return nil }

type nextListPolicy struct{ nextPolicy }

func (nextListPolicy) IsList(addr string) bool { return addr == "list@example.test" }
func (nextListPolicy) CheckPoster(context.Context, string, string) error {
	return nil
}

func frontFor(t *testing.T) *front {
	t.Helper()
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("alice:"+string(h)+":alice@example.test\nbob:"+string(h)+":bob@example.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.SMTP.UsersFile = users
	cfg.SMTP.TrustedNetworks = []config.TrustedNetwork{{CIDR: "10.0.0.0/8", Senders: []string{"alice@example.test"}}}
	f, err := newFront(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// ctxFrom is a session context as smtpfront makes it, for the client at addr.
func ctxFrom(addr string) context.Context {
	return smtpfront.WithClientAddr(context.Background(), netip.MustParseAddr(addr))
}

func TestAuthPolicy(t *testing.T) {
	t.Parallel()
	f := frontFor(t)
	p := f.policy(nextPolicy{})
	tests := []struct {
		name, client, user, sender string
		want                       string
	}{
		{"ok user own address", "198.51.100.1", "alice", "alice@example.test", ""},
		{"fail user someone else's address", "198.51.100.1", "bob", "alice@example.test", "550 5.7.1"},
		{"fail user own address without a key", "198.51.100.1", "bob", "bob@example.test", "550 5.7.1"},
		{"fail anonymous outsider", "198.51.100.1", "", "alice@example.test", "530 5.7.0"},
		{"ok trusted network mapped sender", "10.2.3.4", "", "alice@example.test", ""},
		{"fail trusted network other sender", "10.2.3.4", "", "bob@example.test", "550 5.7.1"},
		{"fail loopback not trusted when networks are configured", "127.0.0.1", "", "alice@example.test", "530 5.7.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := p.CheckSender(ctxFrom(tt.client), tt.sender, tt.user)
			got := ""
			if r := smtpfront.Reply(smtpfront.StageMail, err); r != nil {
				got = fmt.Sprintf("%d %d.%d.%d", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])
			}
			if got != tt.want {
				t.Fatalf("CheckSender = %v (%q), want %q", err, got, tt.want)
			}
		})
	}
	if _, ok := p.(smtpfront.ListPolicy); ok {
		t.Error("a policy without lists grew a ListPolicy")
	}
	lp, ok := f.policy(nextListPolicy{}).(smtpfront.ListPolicy)
	if !ok {
		t.Fatal("the list-posting path was hidden by the wrapper")
	}
	if err := lp.CheckPoster(ctxFrom("198.51.100.1"), "list@example.test", "x@example.net"); !errors.Is(err, smtpfront.ErrAuthRequired) {
		t.Errorf("anonymous outsider posting to a list: %v, want ErrAuthRequired", err)
	}
	if err := lp.CheckPoster(ctxFrom("10.9.9.9"), "list@example.test", "alice@example.test"); err != nil {
		t.Errorf("trusted host posting to a list as its sender: %v", err)
	}
	if err := lp.CheckPoster(ctxFrom("10.9.9.9"), "list@example.test", "x@example.net"); !errors.Is(err, smtpfront.ErrSenderRefused) {
		t.Errorf("trusted host posting to a list as a stranger: %v, want ErrSenderRefused", err)
	}
}

func TestNewFrontRefusesUnsafeUsersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte("# none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(users, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.SMTP.UsersFile = users
	if _, err := newFront(cfg, nil); err == nil || !strings.Contains(err.Error(), "mode") {
		t.Fatalf("newFront = %v, want a mode error", err)
	}
	cfg.SMTP.UsersFile = ""
	cfg.SMTP.TLSCert, cfg.SMTP.TLSKey = filepath.Join(dir, "missing.pem"), filepath.Join(dir, "missing.key")
	if _, err := newFront(cfg, nil); err == nil {
		t.Fatal("newFront accepted a missing TLS key pair")
	}
}

func TestFrontReload(t *testing.T) {
	t.Parallel()
	f := frontFor(t)
	ctx := ctxFrom("198.51.100.1")
	if err := f.Authenticate(ctx, "alice", "pw"); err != nil {
		t.Fatalf("before reload: %v", err)
	}
	h, err := bcrypt.GenerateFromPassword([]byte("new"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.cfg.SMTP.UsersFile, []byte("carol:"+string(h)+":carol@example.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Reload(); err != nil || n != 1 {
		t.Fatalf("Reload = %d, %v", n, err)
	}
	if err := f.Authenticate(ctx, "alice", "pw"); err == nil {
		t.Error("a removed user still authenticates")
	}
	if err := f.Authenticate(ctx, "carol", "new"); err != nil {
		t.Errorf("a new user does not authenticate: %v", err)
	}
	// A removed user's session loses its senders at once.
	if r := smtpfront.Reply(smtpfront.StageMail, f.policy(nextPolicy{}).CheckSender(ctx, "alice@example.test", "alice")); r == nil || r.Code != 530 {
		t.Errorf("removed user's sender check = %v, want 530", r)
	}
	// A broken file keeps the one in force.
	if err := os.WriteFile(f.cfg.SMTP.UsersFile, []byte("broken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Reload(); err == nil {
		t.Fatal("Reload accepted a broken file")
	}
	if err := f.Authenticate(ctx, "carol", "new"); err != nil {
		t.Errorf("after a failed reload: %v", err)
	}
}
