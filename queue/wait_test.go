package queue_test

import (
	"context"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/delivery/smtpsink"
	"appliance/queue"
)

const (
	journalAddr = "journal@example.test"
	waitReason  = "not sent: the message could not be journaled"
)

// waitingJournal adds to proc's packages a journal package (a reverse path of its own, to the
// journal address) and makes every other package wait for it, as [journal] policy = "wait" does.
type waitingJournal struct{ proc }

func (j *waitingJournal) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	s, err := j.proc.Process(ctx, id, env, body)
	if err != nil {
		return s, err
	}
	n := len(s.Packages)
	for i := range s.Packages {
		s.Packages[i].Wait = &queue.Wait{For: []int{n}, Reason: waitReason}
	}
	// The journal sender may be the message's sender: Silent keeps it out of the DSN.
	jp := pkg(env.MailFrom, []string{journalAddr}, []byte("\r\njournal\r\n"))
	jp.Silent = true
	s.Packages = append(s.Packages, jp)
	return s, nil
}

// recipients lists the recipients of every transaction the sink got, in order.
func recipients(msgs []smtpsink.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.To...)
	}
	return out
}

// TestWaitForJournal: packages that wait for the journal package are not sent while the next
// hop defers the journal, not after a restart either (the wait is in the spool record), and go
// out once the journal is accepted, after it.
func TestWaitForJournal(t *testing.T) {
	dir := t.TempDir()
	s := newSink(t)
	s.RejectRcpt(journalAddr, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "journal store busy"})
	p := &waitingJournal{proc{groups: [][]string{{"c@example.test"}}}}
	opts := baseOpts(dir)
	q, stop := running(t, opts, p, newDeliverer(t, s))
	accept(t, q, 1, sender, "b@example.test", "c@example.test")
	waitFor(t, func() bool { return s.RcptAttempts(journalAddr) >= 3 })
	if msgs := s.Messages(); len(msgs) != 0 {
		t.Fatalf("sent %v while the journal is deferred", recipients(msgs))
	}
	stop()

	q2, stop2 := running(t, opts, p, newDeliverer(t, s))
	before := s.RcptAttempts(journalAddr)
	waitFor(t, func() bool { return s.RcptAttempts(journalAddr) >= before+3 })
	if msgs := s.Messages(); len(msgs) != 0 {
		t.Fatalf("sent %v after a restart while the journal is deferred", recipients(msgs))
	}
	if st := q2.Stats(); st.Messages != 1 || st.Pending != 3 {
		t.Errorf("stats %+v, want one message with 3 pending packages", st)
	}

	s.RejectRcpt(journalAddr, nil)
	waitEmpty(t, q2, 20*time.Second)
	stop2()
	got := recipients(s.Messages())
	if len(got) != 3 || got[0] != journalAddr {
		t.Fatalf("transactions to %v, want the journal first, then b and c", got)
	}
	if !slices.Contains(got, "b@example.test") || !slices.Contains(got, "c@example.test") {
		t.Errorf("transactions to %v, want b and c after the journal", got)
	}
	if p.callCount() != 1 {
		t.Errorf("Process called %d times, want 1", p.callCount())
	}
}

// TestWaitJournalFails: when the journal package fails (refused by the next hop, or expired),
// the packages waiting for it are never sent; the sender gets one DSN naming the recipients
// of its own packages and, for copies with a reverse path of their own (a list's members), the
// envelope recipient they came from, with the reason the Processor gave; neither the journal's
// address nor a list member is named.
func TestWaitJournalFails(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply *smtp.SMTPError
		age   time.Duration
	}{
		{"refused", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}, time.Hour},
		{"expired", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "journal store busy"}, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSink(t)
			s.RejectRcpt(journalAddr, tc.reply)
			var mu sync.Mutex
			outcomes := map[string]string{}
			opts := baseOpts(t.TempDir())
			opts.MaxAge = tc.age
			opts.Outcome = func(o queue.Outcome) {
				mu.Lock()
				defer mu.Unlock()
				outcomes[o.Recipient] = o.State
			}
			// c's package is a member copy (null reverse path); list@ is in no package.
			p := &waitingJournal{proc{groups: [][]string{{"c@example.test"}}, null: true, lose: "list@example.test"}}
			q, _ := running(t, opts, p, newDeliverer(t, s))
			accept(t, q, 1, sender, "b@example.test", "c@example.test", "list@example.test")
			waitEmpty(t, q, 30*time.Second)

			pkgs, dsns := split(s.Messages())
			if len(pkgs) != 0 {
				t.Errorf("sent %v though the journal failed", recipients(pkgs))
			}
			if len(dsns) != 1 {
				t.Fatalf("%d DSNs, want 1", len(dsns))
			}
			r := parseDSN(t, dsns[0])
			if !slices.Equal(r.to, []string{sender}) {
				t.Errorf("DSN to %v", r.to)
			}
			if len(r.rcpts) != 2 || r.rcpts["b@example.test"] == "" || r.rcpts["list@example.test"] == "" {
				t.Errorf("DSN names %v, want b and list@ (not the member c, not the journal)", r.rcpts)
			}
			for a, d := range r.diags {
				if !strings.Contains(d, waitReason) {
					t.Errorf("DSN diagnostic for %s %q, want the reason %q", a, d, waitReason)
				}
			}
			if d := string(dsns[0].Data); strings.Contains(d, "journal@") || strings.Contains(d, "c@example.test") {
				t.Errorf("DSN names the journal or the member:\n%s", dsns[0].Data)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, a := range []string{"b@example.test", "c@example.test", journalAddr} {
				if outcomes[a] != "failed" {
					t.Errorf("outcome of %s %q, want failed", a, outcomes[a])
				}
			}
		})
	}
}

// badWait makes the first package wait for itself: a Processor bug the queue refuses at sealing
// rather than holding the message forever.
type badWait struct{ proc }

func (b *badWait) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	s, err := b.proc.Process(ctx, id, env, body)
	if err == nil {
		s.Packages[0].Wait = &queue.Wait{For: []int{0}}
	}
	return s, err
}

func TestWaitRefusedAtSeal(t *testing.T) {
	s := newSink(t)
	q, _ := running(t, baseOpts(t.TempDir()), &badWait{}, newDeliverer(t, s))
	accept(t, q, 1, sender, "b@example.test")
	waitEmpty(t, q, 20*time.Second)
	pkgs, dsns := split(s.Messages())
	if len(pkgs) != 0 || len(dsns) != 1 {
		t.Fatalf("%d packages and %d DSNs, want only a DSN", len(pkgs), len(dsns))
	}
}
