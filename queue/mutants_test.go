package queue_test

// Tests that kill mutants scripts/mutation.sh found living in queue/worker.go
// (docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/delivery"
	"appliance/queue"
)

// logRecords is a slog.Handler that keeps each record's level and message.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (l *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecords) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
	return nil
}
func (l *logRecords) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecords) WithGroup(string) slog.Handler      { return l }

// count is how many records of level say msg.
func (l *logRecords) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.Level == level && r.Message == msg {
			n++
		}
	}
	return n
}

func (l *logRecords) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		if r.Level >= slog.LevelError {
			out = append(out, r.Message)
		}
	}
	return out
}

// TestWorkLog: on a healthy disk the queue logs each step of a message's life once and no
// error: a seal deferred, sealed, delivered, finished. A recipient in no package is warned of
// only when there is one.
func TestWorkLog(t *testing.T) {
	tests := []struct {
		name  string
		proc  *proc
		rcpts []string
		want  map[string]int // message -> count, at Info or Warn
	}{
		{
			name:  "ok seal deferred then delivered",
			proc:  &proc{fail: func(n int) error { return map[bool]error{true: tempErr{"hsm unavailable"}}[n == 1] }},
			rcpts: []string{"b@example.test"},
			want:  map[string]int{"seal deferred": 1, "sealed": 1, "delivered": 1, "finished": 1, "envelope recipients in no package": 0},
		},
		{
			name:  "ok recipient in no package",
			proc:  &proc{lose: "list@example.test"},
			rcpts: []string{"b@example.test", "list@example.test"},
			want:  map[string]int{"seal deferred": 0, "sealed": 1, "delivered": 1, "finished": 1, "envelope recipients in no package": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := newSink(t)
			logs := &logRecords{}
			opts := baseOpts(t.TempDir())
			opts.Logger = slog.New(logs)
			q, stop := running(t, opts, tt.proc, newDeliverer(t, sink))
			accept(t, q, 1, sender, tt.rcpts...)
			waitEmpty(t, q, 10*time.Second)
			stop()
			if errs := logs.errors(); len(errs) > 0 {
				t.Errorf("errors logged on a healthy disk: %q", errs)
			}
			for msg, n := range tt.want {
				level := slog.LevelInfo
				if msg == "seal deferred" || msg == "envelope recipients in no package" {
					level = slog.LevelWarn
				}
				if got := logs.count(level, msg); got != n {
					t.Errorf("%q logged %d times, want %d", msg, got, n)
				}
			}
		})
	}
}

// TestDSNMessageIDs: a message whose sealing refused one recipient and whose delivery failed
// another sends two DSNs, each with a Message-ID of its own.
func TestDSNMessageIDs(t *testing.T) {
	sink := newSink(t)
	sink.RejectRcpt("d@example.test", &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	p := &proc{refuse: []queue.Refusal{{Recipient: "c@example.test", Status: "5.7.1", Reason: "no certificate"}}}
	q, _ := running(t, baseOpts(t.TempDir()), p, newDeliverer(t, sink))
	accept(t, q, 1, sender, "b@example.test", "c@example.test", "d@example.test")
	waitEmpty(t, q, 10*time.Second)
	_, dsns := split(sink.Messages())
	if len(dsns) != 2 {
		t.Fatalf("%d DSNs, want 2", len(dsns))
	}
	var ids []string
	for _, d := range dsns {
		m, err := mail.ReadMessage(bytes.NewReader(d.Data))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get("Message-Id"))
	}
	if ids[0] == "" || ids[0] == ids[1] {
		t.Fatalf("DSN Message-IDs %q", ids)
	}
}

// blockingProc is a Processor that waits for its context to end and returns its error, as
// sealing on a token does when the queue stops.
type blockingProc struct {
	started chan struct{}
	once    sync.Once
}

func (b *blockingProc) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	b.once.Do(func() { close(b.started) })
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestStopWhileSealing: a queue stopped while a message is being sealed parks it as it was:
// reopened, it seals and delivers it, and bounces nothing.
func TestStopWhileSealing(t *testing.T) {
	sink := newSink(t)
	opts := baseOpts(t.TempDir())
	bp := &blockingProc{started: make(chan struct{})}
	q, err := queue.Open(opts, bp, newDeliverer(t, sink))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	accept(t, q, 1, sender, "b@example.test")
	<-bp.started
	cancel()
	<-done
	q.Close()

	p := &proc{}
	q2, _ := running(t, opts, p, newDeliverer(t, sink))
	waitEmpty(t, q2, 10*time.Second)
	pkgs, dsns := split(sink.Messages())
	if len(dsns) != 0 {
		t.Fatalf("%d DSNs for a message parked while sealing", len(dsns))
	}
	if len(pkgs) != 1 || !slices.Equal(pkgs[0].To, []string{"b@example.test"}) || !strings.Contains(string(pkgs[0].Data), "body 1") {
		t.Fatalf("delivered %d packages, want the message to b", len(pkgs))
	}
	if p.callCount() != 1 {
		t.Fatalf("Process called %d times after the restart, want 1", p.callCount())
	}
}

// stoppingDeliverer delivers, then stops the queue's run before it returns: the result of a
// transaction that ended as the queue stopped.
type stoppingDeliverer struct {
	*delivery.Client
	stop func()
}

func (d stoppingDeliverer) Deliver(ctx context.Context, from string, rcpts []string, body io.Reader) ([]queue.RcptResult, error) {
	res, err := d.Client.Deliver(ctx, from, rcpts, body)
	d.stop()
	return res, err
}

// TestStopAfterDelivery: a transaction that succeeded as the queue stopped is recorded: the
// reopened queue does not send the message again.
func TestStopAfterDelivery(t *testing.T) {
	sink := newSink(t)
	opts := baseOpts(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	q, err := queue.Open(opts, &proc{}, stoppingDeliverer{newDeliverer(t, sink), cancel})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	accept(t, q, 1, sender, "b@example.test")
	<-done
	q.Close()

	q2, _ := running(t, opts, &proc{}, newDeliverer(t, sink))
	waitEmpty(t, q2, 10*time.Second)
	if n := len(sink.Messages()); n != 1 {
		t.Fatalf("the next hop got %d messages, want 1", n)
	}
}

// TestNextHopDownRecorded: each failed connection to the next hop is an attempt recorded as
// deferred (Options.Outcome), not a silent retry.
func TestNextHopDownRecorded(t *testing.T) {
	sink := newSink(t)
	sink.Down()
	var mu sync.Mutex
	var states []string
	opts := baseOpts(t.TempDir())
	opts.Outcome = func(o queue.Outcome) {
		mu.Lock()
		states = append(states, o.State)
		mu.Unlock()
	}
	q, _ := running(t, opts, &proc{}, newDeliverer(t, sink))
	accept(t, q, 1, sender, "b@example.test")
	waitFor(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(states) >= 2
	})
	if err := sink.Up(); err != nil {
		t.Fatal(err)
	}
	waitEmpty(t, q, 10*time.Second)
	mu.Lock()
	defer mu.Unlock()
	if states[0] != "deferred" || states[1] != "deferred" || states[len(states)-1] != "delivered" {
		t.Fatalf("outcomes %q, want deferred ones, then delivered", states)
	}
}
