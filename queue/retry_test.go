package queue_test

import (
	"sync/atomic"
	"testing"
	"time"
)

// A message whose sealing was deferred with a long backoff is sealed as soon as RetrySealing is
// called (the HSM came back), not when the backoff ends.
func TestRetrySealing(t *testing.T) {
	tests := []struct {
		name  string
		retry bool
		want  int // messages made due by RetrySealing
	}{
		{name: "ok retry makes deferred sealing due now", retry: true, want: 1},
		{name: "ok without retry the backoff holds", retry: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSink(t)
			var down atomic.Bool
			down.Store(true)
			p := &proc{fail: func(int) error {
				if down.Load() {
					return tempErr{"hsm unavailable"}
				}
				return nil
			}}
			opts := baseOpts(t.TempDir())
			opts.Retry = []time.Duration{time.Hour}
			q, _ := running(t, opts, p, newDeliverer(t, s))
			accept(t, q, 1, sender, "bob@example.test")
			deadline := time.Now().Add(5 * time.Second)
			for q.Stats().SealDeferred == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("sealing never deferred: %+v", q.Stats())
				}
				time.Sleep(5 * time.Millisecond)
			}
			down.Store(false)
			if !tt.retry {
				time.Sleep(200 * time.Millisecond)
				if st := q.Stats(); st.Messages != 1 || p.callCount() != 1 {
					t.Fatalf("message moved without RetrySealing: %+v, %d calls", st, p.callCount())
				}
				return
			}
			if n := q.RetrySealing(); n != tt.want {
				t.Fatalf("RetrySealing = %d, want %d", n, tt.want)
			}
			waitEmpty(t, q, 5*time.Second)
			if got := len(s.Messages()); got != 1 {
				t.Fatalf("%d messages delivered, want 1", got)
			}
			if n := q.RetrySealing(); n != 0 {
				t.Fatalf("RetrySealing on an empty queue = %d", n)
			}
		})
	}
}
