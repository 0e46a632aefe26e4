package auth

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// TestLive: Reload puts a new Authorizer in force; one that fails to load leaves the previous.
func TestLive(t *testing.T) {
	ctx := context.Background()
	u, err := ParseUsers(strings.NewReader(usersFile(t)))
	if err != nil {
		t.Fatal(err)
	}
	next := &Authorizer{Users: u}
	var loadErr error
	l, err := NewLive(func() (*Authorizer, error) { return next, loadErr })
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Authenticate(ctx, "alice", "alice-pw"); err != nil || !l.KnownUser("alice") {
		t.Fatalf("alice: %v, known %v", err, l.KnownUser("alice"))
	}
	ip := netip.MustParseAddr("198.51.100.7")
	if err := l.Authorize(ip, "alice", "alice@example.test"); err != nil {
		t.Fatalf("Authorize: %v", err)
	}

	next = &Authorizer{} // no users file
	if n, err := l.Reload(); err != nil || n != 0 {
		t.Fatalf("Reload = %d, %v", n, err)
	}
	if err := l.Authenticate(ctx, "alice", "alice-pw"); !errors.Is(err, ErrBadCredentials) || l.KnownUser("alice") {
		t.Fatalf("alice after reload without users: %v", err)
	}

	next, loadErr = &Authorizer{Users: u}, errors.New("broken file")
	if _, err := l.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if l.KnownUser("alice") {
		t.Fatal("a failed reload replaced the authorizer in force")
	}
	if _, err := NewLive(func() (*Authorizer, error) { return nil, loadErr }); err == nil {
		t.Fatal("NewLive accepted a failed load")
	}
}
