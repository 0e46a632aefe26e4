package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// rawSend runs MAIL, RCPT and DATA for msg on an open connection and returns the final reply.
func rawSend(t *testing.T, r *Raw, rcpt string, msg []byte) (int, string) {
	t.Helper()
	if code, text, err := r.Cmd("MAIL FROM:<" + Sender + ">"); err != nil || code != 250 {
		t.Fatalf("MAIL: %d %s %v", code, text, err)
	}
	if code, text, err := r.Cmd("RCPT TO:<" + rcpt + ">"); err != nil || code != 250 {
		t.Fatalf("RCPT %s: %d %s %v", rcpt, code, text, err)
	}
	if code, text, err := r.Cmd("DATA"); err != nil || code != 354 {
		t.Fatalf("DATA: %d %s %v", code, text, err)
	}
	code, text, err := r.Send(append(msg, ".\r\n"...))
	if err != nil {
		t.Fatalf("end of data: %v", err)
	}
	return code, text
}

// TestSIGTERM: with mail deferred in the spool, a client in the middle of a transaction and
// another idle, SIGTERM closes the listener at once, lets the open transaction finish, cuts the
// idle client off at the shutdown deadline (20s) and exits cleanly; after a restart everything
// acknowledged is delivered, and passes the privacy checker (the deferred messages have dave as a
// hidden recipient).
func TestSIGTERM(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d := StartDaemon(t, env, NewConfig(t, env, s.Addr()))

	// Mail the next hop keeps deferring stays in the spool across the restart.
	s.AddFault(sink.Fault{Stage: sink.AtData, Reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"}})
	ids := map[string][]string{}
	led := newLedgerOf()
	for i := range 3 {
		m := Message{From: Sender, To: []string{bob}, Subject: "deferred " + string(rune('a'+i)), Text: "x\n"}
		raw := m.Bytes()
		led.add(raw, m.To, nil)
		if res, err := SubmitGo(d.Addr, Sender, []string{bob, dave}, raw); err != nil || res.Data != nil {
			t.Fatalf("submission: %v %+v", err, res)
		}
		ids[messageID(raw)] = []string{bob, dave}
	}
	if err := d.WaitLog(`"msg":"delivery deferred"`, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	busy, err := DialRaw(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	idle, err := DialRaw(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	if code, text, err := busy.Cmd("MAIL FROM:<" + Sender + ">"); err != nil || code != 250 {
		t.Fatalf("MAIL: %d %s %v", code, text, err)
	}
	if code, text, err := busy.Cmd("RSET"); err != nil || code != 250 {
		t.Fatalf("RSET: %d %s %v", code, text, err)
	}

	start := time.Now()
	if err := d.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused while the open ones are still being served.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := Message{From: Sender, To: []string{bob}, Subject: "during shutdown", Text: "y\n"}
	raw := m.Bytes()
	led.add(raw, m.To, nil)
	if code, text := rawSend(t, busy, bob, raw); code != 250 {
		t.Fatalf("transaction open at SIGTERM: %d %s, want 250", code, text)
	}
	ids[messageID(raw)] = []string{bob}
	busy.Close()

	if err := d.WaitExit(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if err := d.ExitErr(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if took > 25*time.Second {
		t.Errorf("exited %v after SIGTERM, the deadline is 20s", took)
	}
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))

	s.ClearFaults()
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitDelivered(t, s, ids, 15*time.Second)
	if n := checkDelivered(t, pki, led, s.Transactions(), nil); n != 7 {
		t.Errorf("privacy checker judged %d transactions, want 7", n)
	}
}

// TestSIGHUPReload: a certificate added to the folder becomes usable after SIGHUP, and an SMTP
// connection open across the reload keeps working and sees the new certificate.
func TestSIGHUPReload(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	certs := t.TempDir()
	entries, err := os.ReadDir(env.File("certs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "erin.pem" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(env.File("certs"), e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certs, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := NewConfig(t, env, s.Addr())
	cfg.Directory.Certs = certs
	d := StartDaemon(t, env, cfg)

	r, err := DialRaw(d.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if code, _, err := r.Cmd("MAIL FROM:<" + Sender + ">"); err != nil || code != 250 {
		t.Fatalf("MAIL: %d %v", code, err)
	}
	if code, text, err := r.Cmd("RCPT TO:<" + erin + ">"); err != nil || code != 550 || !strings.HasPrefix(text, "5.7.1") {
		t.Fatalf("RCPT for a recipient without certificate: %d %s %v, want 550 5.7.1", code, text, err)
	}
	if code, _, err := r.Cmd("RSET"); err != nil || code != 250 {
		t.Fatalf("RSET: %d %v", code, err)
	}

	b, err := os.ReadFile(env.File("certs/erin.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "erin.pem"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := d.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := d.WaitLog(`"msg":"directory reloaded"`, 1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if !d.Running() {
		t.Fatal("the daemon exited on SIGHUP")
	}
	m := Message{From: Sender, To: []string{erin}, Subject: "after reload", Text: "z\n"}
	raw := m.Bytes()
	if code, text := rawSend(t, r, erin, raw); code != 250 {
		t.Fatalf("on the connection open across the reload: %d %s, want 250", code, text)
	}
	waitDelivered(t, s, map[string][]string{messageID(raw): {erin}}, 10*time.Second)
}
