package smtpfront

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestCommandsBeforeMail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
	}{
		{"ok under the limit", []step{
			{"NOOP", "250"}, {"RSET", "250"}, {"VRFY bob", "252"}, {"NOOP", "250"},
		}},
		{"fail noop flood", []step{
			{"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "421 4.7.0"},
		}},
		{"fail refused senders count", []step{
			{"MAIL FROM:<mallory@example.test>", "550 5.7.1"}, {"MAIL FROM:<eve@example.test>", "550 5.7.1"},
			{"MAIL FROM:<oscar@example.test>", "550 5.7.1"}, {"MAIL FROM:<trudy@example.test>", "550 5.7.1"},
			{"MAIL FROM:<alice@example.test>", "421 4.7.0"},
		}},
		{"ok a transaction resets the count", []step{
			{"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "250"},
			{"MAIL FROM:<alice@example.test>", "250"},
			{"RCPT TO:<r1@example.test>", "250"}, {"RCPT TO:<r2@example.test>", "250"},
			{"RCPT TO:<r3@example.test>", "250"}, {"RCPT TO:<r4@example.test>", "250"},
			{"RCPT TO:<r5@example.test>", "250"}, {"RSET", "250"},
			{"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "250"}, {"NOOP", "250"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, Options{MaxCommandsBeforeMail: 5, MaxRecipients: 10}, newFileSpool(t), newTestPolicy())
			rc := dialRaw(t, ts.addr)
			if got := rc.cmd("EHLO client"); !strings.HasPrefix(got, "250") {
				t.Fatalf("EHLO = %q", got)
			}
			for i, st := range tt.steps {
				if got := rc.cmd(st.send); !strings.HasPrefix(code(got), st.want) {
					t.Fatalf("step %d %q = %q, want %q", i, st.send, got, st.want)
				}
			}
			if last := tt.steps[len(tt.steps)-1]; strings.HasPrefix(last.want, "421") {
				// The connection is gone, not merely answered.
				_ = rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := rc.r.ReadString('\n'); err == nil || isTimeout(err) {
					t.Fatalf("connection still open after 421: %v", err)
				}
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	t.Parallel()
	const delay = 100 * time.Millisecond
	ts := startServer(t, Options{
		Auth:                 passwords{"alice": "secret"},
		AllowInsecureAuth:    true,
		MaxAuthFailures:      2,
		AuthFailureDelay:     delay,
		MaxAuthFailuresPerIP: 3,
		AuthLockout:          time.Minute,
	}, newFileSpool(t), newTestPolicy())

	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	start := time.Now()
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "wrong")); code(got) != "535 5.7.8" {
		t.Fatalf("first wrong password = %q, want 535 5.7.8", got)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("first failure answered after %v, want at least %v", d, delay)
	}
	start = time.Now()
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "wrong2")); code(got) != "421 4.7.0" {
		t.Fatalf("second wrong password = %q, want 421 4.7.0 (per-connection limit)", got)
	}
	if d := time.Since(start); d < 2*delay {
		t.Errorf("second failure answered after %v, want at least %v (delay grows)", d, 2*delay)
	}

	rc = dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	if got := rc.cmd("AUTH PLAIN " + plainIR("nobody", "x")); code(got) != "535 5.7.8" {
		t.Fatalf("unknown user = %q, want 535 5.7.8", got)
	}
	// Three failures from this address: locked out, even with the right
	// password, and without the password being checked.
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "secret")); code(got) != "454 4.7.0" {
		t.Fatalf("right password while locked out = %q, want 454 4.7.0", got)
	}
	rc = dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "secret")); code(got) != "454 4.7.0" {
		t.Fatalf("new connection while locked out = %q, want 454 4.7.0", got)
	}
	if log := ts.logText(); strings.Contains(log, "wrong2") || strings.Contains(log, "secret") {
		t.Errorf("a password reached the log:\n%s", log)
	}
}

func TestAuthSucceedsAfterOneFailure(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{
		Auth: passwords{"alice": "secret"}, AllowInsecureAuth: true, AuthFailureDelay: time.Millisecond,
	}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "typo")); code(got) != "535 5.7.8" {
		t.Fatalf("wrong password = %q", got)
	}
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "secret")); code(got) != "235 2.0.0" {
		t.Fatalf("right password = %q, want 235", got)
	}
}

func TestSessionTimeout(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{SessionTimeout: 400 * time.Millisecond, MaxCommandsBeforeMail: -1}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	start := time.Now()
	for time.Since(start) < 5*time.Second {
		// A client that is never idle for long is still cut off.
		time.Sleep(50 * time.Millisecond)
		got := rc.cmd("NOOP")
		if strings.HasPrefix(got, "421") {
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("session ended after %v, want about 400ms", d)
			}
			return
		}
	}
	t.Fatal("session was never cut off")
}

type addrPolicy struct {
	*testPolicy
	mu   sync.Mutex
	seen []netip.Addr
}

func (p *addrPolicy) CheckSender(ctx context.Context, from, user string) error {
	a, _ := ClientAddr(ctx)
	p.mu.Lock()
	p.seen = append(p.seen, a)
	p.mu.Unlock()
	return p.testPolicy.CheckSender(ctx, from, user)
}

func TestClientAddr(t *testing.T) {
	t.Parallel()
	pol := &addrPolicy{testPolicy: newTestPolicy()}
	ts := startServer(t, Options{}, newFileSpool(t), pol)
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	if got := rc.cmd("MAIL FROM:<alice@example.test>"); !strings.HasPrefix(got, "250") {
		t.Fatalf("MAIL = %q", got)
	}
	pol.mu.Lock()
	defer pol.mu.Unlock()
	if len(pol.seen) != 1 || pol.seen[0] != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("policy saw client %v, want [127.0.0.1]", pol.seen)
	}
}

func TestCommandsBeforeEHLO(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{MaxCommandsBeforeMail: 5}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.send(strings.Repeat("NOOP\r\n", 20))
	for i := 0; i < 5; i++ {
		if got := rc.reply(); !strings.HasPrefix(got, "250") {
			t.Fatalf("NOOP %d = %q", i+1, got)
		}
	}
	// No session exists before EHLO; the 421 must still be said.
	if got := rc.reply(); code(got) != "421 4.7.0" {
		t.Fatalf("sixth NOOP = %q, want 421 4.7.0", got)
	}
}

func TestConnsPerIPUnderTLS(t *testing.T) {
	t.Parallel()
	srvCfg, cliCfg := testTLS(t)
	ts := &testServer{spool: newFileSpool(t)}
	ts.srv = New(Options{TLSConfig: srvCfg, MaxConnsPerIP: 1}, ts.spool, newTestPolicy())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.srv.ServeTLS(l)
	t.Cleanup(func() { ts.srv.Close() })
	first, err := tls.Dial("tcp", l.Addr().String(), cliCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	buf := make([]byte, 64)
	if n, err := first.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "220") {
		t.Fatalf("first connection: %q, %v", buf[:n], err)
	}
	// The second is closed before the handshake, not sent a plaintext 421.
	second, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := second.Read(buf)
	if n != 0 || err == nil || isTimeout(err) {
		t.Fatalf("second connection read %q, %v; want it closed", buf[:n], err)
	}
}
