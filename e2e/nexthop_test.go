package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// TestNextHopFaults runs one daemon against a next hop that is down, then answers 421 and 451,
// then refuses one recipient with 550. The test schedule is retry = ["1s", "2s"]: a message that
// fails twice is delivered on the third attempt about 3s after it arrived, not sooner (no busy
// retrying) and not much later. The 550 produces one DSN to the sender naming only that recipient.
func TestNextHopFaults(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	d := StartDaemon(t, env, NewConfig(t, env, s.Addr()))

	// submit sends one message To bob and returns its Message-ID and when it was acknowledged.
	submit := func(t *testing.T, m Message, rcpt []string) (string, time.Time) {
		t.Helper()
		raw := m.Bytes()
		res, err := SubmitGo(d.Addr, Sender, rcpt, raw)
		if err != nil || res.Mail != nil || res.Data != nil {
			t.Fatalf("submission: %v, %+v", err, res)
		}
		return messageID(raw), time.Now()
	}
	// arrival waits for the transactions carrying id and returns them.
	arrival := func(t *testing.T, id string, n int) []sink.Transaction {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			var got []sink.Transaction
			for _, tx := range s.Transactions() {
				if messageID(tx.Data) == id {
					got = append(got, tx)
				}
			}
			if len(got) >= n {
				return got
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d transactions of %s arrived\n%s", len(got), n, id, tail(d.Log(), 30))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	bobOnly := Message{From: Sender, To: []string{bob}, Text: "x\n"}

	tests := []struct {
		name     string
		fault    func() // arms the fault; cleared by the test afterwards
		downFor  time.Duration
		min, max time.Duration // delivery this long after acknowledgment
		deferred int           // "delivery deferred" log lines for the message
	}{
		{name: "ok next hop down, delivered on the third attempt", downFor: 2300 * time.Millisecond,
			min: 2800 * time.Millisecond, max: 5 * time.Second, deferred: 2},
		// At RCPT, not MAIL: the client rightly retries a 421 at MAIL on a reused connection
		// once on a fresh one (the next hop may have timed it out), which would use up both.
		{name: "ok 421 twice at RCPT, delivered on the third attempt", fault: func() {
			s.AddFault(sink.Fault{Stage: sink.AtRcpt, Times: 2, Reply: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}})
		}, min: 2800 * time.Millisecond, max: 5 * time.Second, deferred: 2},
		{name: "ok 451 once after DATA, delivered on the second attempt", fault: func() {
			s.AddFault(sink.Fault{Stage: sink.AtData, Times: 1, Reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}})
		}, min: 900 * time.Millisecond, max: 3 * time.Second, deferred: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer s.ClearFaults()
			if tt.fault != nil {
				tt.fault()
			}
			if tt.downFor > 0 {
				if err := s.Down(); err != nil {
					t.Fatal(err)
				}
			}
			m := bobOnly
			m.Subject = tt.name
			id, at := submit(t, m, []string{bob})
			if tt.downFor > 0 {
				time.Sleep(tt.downFor)
				if err := s.Up(); err != nil {
					t.Fatal(err)
				}
			}
			tx := arrival(t, id, 1)[0]
			if took := tx.Time.Sub(at); took < tt.min || took > tt.max {
				t.Errorf("delivered %v after acknowledgment, want %v..%v (retry schedule 1s, 2s)", took, tt.min, tt.max)
			}
			if got := deferredLines(d.Log(), id, s); got < tt.deferred {
				t.Errorf("%d deferrals logged, want %d", got, tt.deferred)
			}
		})
	}

	t.Run("ok 550 for one recipient: DSN to the sender names only that one", func(t *testing.T) {
		defer s.ClearFaults()
		s.AddFault(sink.Fault{Stage: sink.AtRcpt, Rcpt: erin, Reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}})
		before, refusedBefore := len(s.Transactions()), s.Refused()
		m := Message{From: Sender, To: []string{bob}, Cc: []string{erin}, Subject: "one refused", Text: "x\n"}
		id, _ := submit(t, m, []string{bob, erin, dave}) // dave is Bcc: a package of his own
		got := arrival(t, id, 2)
		var dsn *sink.Transaction
		deadline := time.Now().Add(10 * time.Second)
		for dsn == nil && time.Now().Before(deadline) {
			for _, tx := range s.Transactions()[before:] {
				if tx.MailFrom == "" {
					dsn = &tx
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if dsn == nil {
			t.Fatal("no DSN arrived")
		}
		var rcpts []string
		for _, tx := range got {
			rcpts = append(rcpts, tx.RcptTo...)
		}
		if strings.Join(rcpts, " ") != bob+" "+dave && strings.Join(rcpts, " ") != dave+" "+bob {
			t.Errorf("delivered to %q, want bob and dave", rcpts)
		}
		if len(dsn.RcptTo) != 1 || dsn.RcptTo[0] != Sender {
			t.Errorf("DSN to %q, want the sender only", dsn.RcptTo)
		}
		if !bytes.Contains(dsn.Data, []byte("Final-Recipient: rfc822; "+erin)) || !bytes.Contains(dsn.Data, []byte("Status: 5.1.1")) {
			t.Errorf("DSN does not report %s with 5.1.1:\n%s", erin, dsn.Data)
		}
		for _, other := range []string{bob, dave} {
			if bytes.Contains(bytes.ToLower(dsn.Data), []byte(other)) {
				t.Errorf("DSN names %s, who was delivered:\n%s", other, dsn.Data)
			}
		}
		// A permanent failure is final: erin is not tried again, nothing else arrives.
		time.Sleep(3500 * time.Millisecond)
		if n := len(s.Transactions()) - before; n != 3 {
			t.Errorf("%d transactions, want 3 (bob's package, dave's, the DSN)", n)
		}
		if n := s.Refused() - refusedBefore; n != 1 {
			t.Errorf("the sink refused %d times, want 1 (erin is not retried)", n)
		}
	})
}

// deferredLines counts "delivery deferred" log lines of the queue message whose package carried
// Message-ID id (found through the sink's transaction and the queue id in its Received field).
func deferredLines(log, id string, s *sink.Sink) int {
	var qid string
	for _, tx := range s.Transactions() {
		if messageID(tx.Data) != id {
			continue
		}
		// Received: ... with ESMTP id QID
		if _, rest, ok := strings.Cut(string(tx.Data), " with ESMTP id "); ok {
			qid, _, _ = strings.Cut(rest, "\r\n")
			qid = strings.TrimRight(qid, ";")
		}
	}
	if qid == "" {
		return 0
	}
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"msg":"delivery deferred"`) && strings.Contains(line, `"id":"`+qid+`"`) {
			n++
		}
	}
	return n
}
