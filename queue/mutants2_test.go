package queue_test

// Tests that kill mutants scripts/mutation.sh found living in queue/queue.go and spool.go
// (docs/testing.md, "Mutation testing").

import (
	"context"
	"io"
	"strings"
	"sync"
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

// blockingDeliverer is a Deliverer whose transactions wait for the queue to stop, as one to a
// next hop that never answers does.
type blockingDeliverer struct {
	started chan struct{}
	once    sync.Once
}

func (d *blockingDeliverer) Deliver(ctx context.Context, _ string, _ []string, _ io.Reader) ([]queue.RcptResult, error) {
	d.once.Do(func() { close(d.started) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStatsDeferred: Stats counts a package as deferred only once an attempt failed, and a
// message as seal-deferred once sealing failed: a sealed message whose first delivery was cut
// off by the queue stopping is pending, not deferred; a message whose sealing failed is.
func TestStatsDeferred(t *testing.T) {
	opts := baseOpts(t.TempDir())
	d := &blockingDeliverer{started: make(chan struct{})}
	q, err := queue.Open(opts, &proc{}, d)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	accept(t, q, 1, sender, "b@example.test")
	<-d.started
	cancel()
	<-done
	q.Close()
	q2, err := queue.Open(opts, &proc{}, d)
	if err != nil {
		t.Fatal(err)
	}
	st := q2.Stats()
	q2.Close()
	if st.Messages != 1 || st.Received != 0 || st.Pending != 1 || st.Deferred != 0 {
		t.Errorf("after a cut-off first attempt: %+v, want 1 message, 1 package pending, none deferred", st)
	}

	opts = baseOpts(t.TempDir())
	opts.Retry = []time.Duration{time.Hour}
	p := &proc{fail: func(int) error { return tempErr{"hsm unavailable"} }}
	q3, _ := running(t, opts, p, newDeliverer(t, newSink(t)))
	accept(t, q3, 1, sender, "b@example.test")
	waitFor(t, func() bool { return p.callCount() >= 1 && q3.Stats().SealDeferred != 0 })
	if st := q3.Stats(); st.Received != 1 || st.SealDeferred != 1 {
		t.Errorf("after a failed seal: %+v, want 1 received, 1 seal-deferred", st)
	}
}
