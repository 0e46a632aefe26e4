package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/ci"
	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// smallDisk mounts a tmpfs of the given size for the test. Mounting needs root (or
// CAP_SYS_ADMIN): elsewhere the test skips, except under CI (any value), where it must run.
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	err := errors.New("not root")
	if os.Geteuid() == 0 {
		err = syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size)
	}
	if err != nil {
		if ci.On() {
			t.Fatalf("cannot mount a %s tmpfs (CI set: the full-disk test must run): %v", size, err)
		}
		t.Skipf("cannot mount a %s tmpfs: %v", size, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestDiskFull puts the spool on a 2 MB tmpfs with the next hop down: the front end takes mail
// until the free space falls below what two more of the largest messages need, then answers
// 452 4.3.1; once the next hop is back and the spool drains it takes mail again, and every
// message acknowledged before decrypts to exactly what was submitted.
func TestDiskFull(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	disk := smallDisk(t, "2m")
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	cfg.Spool.Dir = filepath.Join(disk, "spool")
	cfg.SMTP.MaxMessageBytes = 256 << 10 // the daemon keeps 512 KB free
	d := StartDaemon(t, env, cfg)
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}

	acked := map[string][]byte{} // Message-ID -> submitted message
	var refusal *smtp.SMTPError
	for i := 0; i < 60 && refusal == nil; i++ {
		att := bytes.Repeat([]byte(fmt.Sprintf("%07d ", i)), 40<<10/8)
		m := Message{From: Sender, To: []string{bob}, Subject: fmt.Sprintf("disk %d", i), Text: "attached\n", Attachment: att}
		raw := m.Bytes()
		res, err := SubmitGo(d.Addr, Sender, []string{bob}, raw)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case res.Mail != nil:
			t.Fatalf("MAIL refused: %v", res.Mail)
		case res.Data == nil:
			acked[messageID(raw)] = raw
		case errors.As(res.Data, &refusal):
		default:
			t.Fatalf("DATA failed without an SMTP reply: %v", res.Data)
		}
	}
	if refusal == nil {
		t.Fatalf("%d messages accepted on a 2 MB spool, no refusal", len(acked))
	}
	if refusal.Code != 452 || refusal.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Fatalf("refusal %d %v %q, want 452 4.3.1", refusal.Code, refusal.EnhancedCode, refusal.Message)
	}
	if len(acked) < 3 {
		t.Fatalf("only %d messages accepted before the refusal", len(acked))
	}

	// The next hop comes back; the spool drains and takes mail again.
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	ids := map[string][]string{}
	for id := range acked {
		ids[id] = []string{bob}
	}
	waitDelivered(t, s, ids, 30*time.Second)
	m := Message{From: Sender, To: []string{bob}, Subject: "after the drain", Text: "room again\n"}
	if res, err := SubmitGo(d.Addr, Sender, []string{bob}, m.Bytes()); err != nil || res.Data != nil {
		t.Fatalf("submission after the spool drained: %v, %+v", err, res)
	}

	// Nothing acknowledged was damaged: each package decrypts and verifies to what was sent.
	checker := &Checker{PKI: pki, Tmp: t.TempDir()}
	byID := map[string][]sink.Transaction{}
	for _, tx := range s.Transactions() {
		byID[messageID(tx.Data)] = append(byID[messageID(tx.Data)], tx)
	}
	for id, raw := range acked {
		exp := Expect{From: Sender, To: []string{bob}, Rcpt: []string{bob}, Message: raw}
		if _, err := checker.Check(context.Background(), exp, byID[id]); err != nil {
			t.Errorf("message %s: %v", id, err)
		}
	}
	t.Logf("%d messages accepted, then %d %v %s", len(acked), refusal.Code, refusal.EnhancedCode, refusal.Message)
}
