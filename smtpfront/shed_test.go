package smtpfront

import (
	"strings"
	"sync/atomic"
	"testing"
)

// TestShedSpoolThreshold: once the spool holds the threshold of messages,
// a new MAIL gets 451 4.3.2, while a transaction already past MAIL is
// completed and spooled; nothing accepted is lost.
func TestShedSpoolThreshold(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	shed := NewLoadShedder(LoadLimits{SpoolMessages: 2, Every: -1},
		LoadSource{SpoolMessages: func() int { return len(spool.messages(t)) }}, nil)
	ts := startServer(t, Options{Load: shed}, spool, newTestPolicy())

	// A transaction begun before the spool fills.
	early := dialRaw(t, ts.addr)
	early.cmd("EHLO early.example.test")
	if got := early.cmd("MAIL FROM:<alice@example.test>"); code(got) != "250 2.0.0" {
		t.Fatalf("early MAIL = %q", got)
	}
	early.cmd("RCPT TO:<bob@example.test>")

	var ids []string
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	for i := 0; i < 2; i++ {
		rc.cmd("MAIL FROM:<alice@example.test>")
		rc.cmd("RCPT TO:<bob@example.test>")
		rc.cmd("DATA")
		got := rc.cmd("From: alice@example.test\r\n\r\nmessage\r\n.")
		if code(got) != "250 2.0.0" {
			t.Fatalf("message %d: %q", i, got)
		}
		ids = append(ids, got[strings.LastIndexByte(got, ' ')+1:])
	}
	if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != "451 4.3.2" {
		t.Fatalf("MAIL past the threshold = %q, want 451 4.3.2", got)
	}
	// Already past MAIL: taken.
	early.cmd("DATA")
	got := early.cmd("From: alice@example.test\r\n\r\nearly\r\n.")
	if code(got) != "250 2.0.0" {
		t.Fatalf("transaction begun before the threshold: %q", got)
	}
	ids = append(ids, got[strings.LastIndexByte(got, ' ')+1:])
	msgs := spool.messages(t)
	for _, id := range ids {
		if _, ok := msgs[id]; !ok {
			t.Errorf("accepted message %s not in the spool", id)
		}
	}
	if len(msgs) != 3 {
		t.Errorf("spool holds %d, want 3", len(msgs))
	}
	if c := ts.srv.Stats().Shed[ShedSpoolMessages]; c != 1 {
		t.Errorf("shed count %d, want 1", c)
	}
	if !strings.Contains(ts.logText(), "spool_messages") {
		t.Errorf("log does not say why:\n%s", ts.logText())
	}
}

// TestShedHSMBacklog: a backlog of messages waiting for the HSM sheds new
// MAIL until it drains; the transaction in flight completes.
func TestShedHSMBacklog(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	var backlog atomic.Int64
	shed := NewLoadShedder(LoadLimits{HSMBacklog: 100, Every: -1},
		LoadSource{HSMBacklog: func() int { return int(backlog.Load()) }}, nil)
	ts := startServer(t, Options{Load: shed}, spool, newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != "250 2.0.0" {
		t.Fatalf("MAIL = %q", got)
	}
	rc.cmd("RCPT TO:<bob@example.test>")
	backlog.Store(150) // the HSM falls behind mid-transaction
	rc.cmd("DATA")
	if got := rc.cmd("From: alice@example.test\r\n\r\nin flight\r\n."); code(got) != "250 2.0.0" {
		t.Fatalf("transaction in flight: %q", got)
	}
	for i := 0; i < 3; i++ {
		if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != "451 4.3.2" {
			t.Fatalf("MAIL with the backlog = %q, want 451 4.3.2", got)
		}
	}
	backlog.Store(10)
	if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != "250 2.0.0" {
		t.Fatalf("MAIL after the backlog drained = %q", got)
	}
	if n := len(spool.messages(t)); n != 1 {
		t.Errorf("spool holds %d, want 1", n)
	}
	if c := ts.srv.Stats().Shed[ShedHSMBacklog]; c != 3 {
		t.Errorf("shed count %d, want 3", c)
	}
	log := ts.logText()
	if !strings.Contains(log, "load shedding") || !strings.Contains(log, "hsm_backlog") || !strings.Contains(log, "load shedding ended") {
		t.Errorf("log does not tell the shedding:\n%s", log)
	}
	// Told once when it begins; each MAIL it refuses is a debug line, not an error a MAIL.
	if n := strings.Count(log, "level=WARN msg=\"load shedding: new mail refused"); n != 1 {
		t.Errorf("shedding's start logged %d times, want 1:\n%s", n, log)
	}
	refused := 0
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, `reply="451 4.3.2"`) {
			continue
		}
		refused++
		if !strings.Contains(l, "level=DEBUG") {
			t.Errorf("a MAIL refused while shedding logged above debug: %s", l)
		}
	}
	if refused != 3 {
		t.Errorf("%d refused MAILs in the debug log, want 3:\n%s", refused, log)
	}
}
