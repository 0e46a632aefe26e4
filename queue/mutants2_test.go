package queue_test

// Tests that kill mutants scripts/mutation.sh found living in queue/queue.go and spool.go
// (docs/testing.md, "Mutation testing").

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/queue"
)

// TestOpenRetrySteps: every retry step must be positive; a step of 0 would retry at once,
// forever.
func TestOpenRetrySteps(t *testing.T) {
	for _, steps := range [][]time.Duration{{0}, {time.Minute, 0}, {time.Minute, -time.Second}} {
		opts := baseOpts(t.TempDir())
		opts.Retry = steps
		q, err := queue.Open(opts, &proc{}, newDeliverer(t, newSink(t)))
		if err == nil {
			q.Close()
			t.Errorf("Open with retry steps %v: no error", steps)
		} else if !strings.Contains(err.Error(), "retry step") {
			t.Errorf("Open with retry steps %v: %v", steps, err)
		}
	}
}

// TestDefaultMaxAge: MaxAge 0 means DefaultMaxAge, not "expire at once": a recipient the
// next hop defers once is delivered on the retry, with no DSN.
func TestDefaultMaxAge(t *testing.T) {
	sink := newSink(t)
	sink.RejectRcpt("c@example.test", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"})
	opts := baseOpts(t.TempDir())
	opts.MaxAge = 0
	q, _ := running(t, opts, &proc{}, newDeliverer(t, sink))
	accept(t, q, 1, sender, "b@example.test", "c@example.test")
	waitFor(t, func() bool { return sink.RcptAttempts("c@example.test") >= 1 })
	sink.RejectRcpt("c@example.test", nil)
	waitEmpty(t, q, 10*time.Second)
	pkgs, dsns := split(sink.Messages())
	if len(dsns) != 0 {
		t.Errorf("%d DSNs, want none", len(dsns))
	}
	var to []string
	for _, m := range pkgs {
		to = append(to, m.To...)
	}
	if strings.Join(to, ",") != "b@example.test,c@example.test" {
		t.Errorf("delivered to %v", to)
	}
}
