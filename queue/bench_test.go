package queue_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"appliance/queue"
)

// discardDeliverer accepts every package after reading it, so a benchmark measures the spool and
// the workers, not an SMTP conversation.
type discardDeliverer struct{}

func (discardDeliverer) Deliver(_ context.Context, _ string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	if _, err := io.Copy(io.Discard, body); err != nil {
		return nil, err
	}
	out := make([]queue.RcptResult, len(rcptTo))
	for i, r := range rcptTo {
		out[i] = queue.RcptResult{Rcpt: r}
	}
	return out, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSpool is the queue's own cost per message: Accept, seal (a fake Processor copying the
// body into each package), deliver (read back and discarded) and removal, on the file system the
// tests run on, by 8 concurrent submitters as in bench/run.sh. cpu-µs/msg is the process's CPU
// time, user and system, per message, which is what the load benchmark's ratio depends on.
func BenchmarkSpool(b *testing.B) {
	for _, bc := range []struct {
		name   string
		size   int
		groups [][]string
		rcpts  []string
	}{
		{"10KB-1rcpt", 10 << 10, nil, []string{"b@example.test"}},
		{"50KB-4pkgs", 50 << 10, [][]string{{"c@example.test"}, {"d@example.test"}, {"e@example.test"}},
			[]string{"b@example.test", "c@example.test", "d@example.test", "e@example.test"}},
	} {
		for _, recycle := range []bool{true, false} {
			name := bc.name
			if !recycle {
				name += "-norecycle"
			}
			b.Run(name, func(b *testing.B) {
				queue.SetRecycle(recycle)
				defer queue.SetRecycle(true)
				benchSpool(b, bc.size, bc.groups, bc.rcpts)
			})
		}
	}
}

func benchSpool(b *testing.B, size int, groups [][]string, rcpts []string) {
	q, err := queue.Open(queue.Options{Dir: b.TempDir(), Workers: 16, Hostname: "relay.example.test"},
		&proc{groups: groups}, discardDeliverer{})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; q.Close() }()
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), size/18)
	env := queue.Envelope{MailFrom: sender, RcptTo: rcpts}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(4) // 8 submitters on 2 cores
	b.ResetTimer()
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for q.Stats().Messages > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/msg")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// slowDeliverer accepts every package after reading it and waiting as long as a next hop's
// round trips take, so that transactions of one message end at different times as they do
// over the network.
type slowDeliverer struct{ wait time.Duration }

func (d slowDeliverer) Deliver(ctx context.Context, from string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	time.Sleep(d.wait)
	return discardDeliverer{}.Deliver(ctx, from, rcptTo, body)
}

// BenchmarkDeliverCommits is the life of a message of 21 packages (1 To + 20 Bcc, as the 1m
// load), one message at a time: each package's result is committed, and commits/msg says how
// many fdatasyncs that took (21 when every result commits alone; fewer when a commit covers the
// results that ended while the one before it synced).
func BenchmarkDeliverCommits(b *testing.B) {
	rcpts := []string{"b@example.test"}
	var groups [][]string
	for i := range 20 {
		r := fmt.Sprintf("u%02d@example.test", i+1)
		rcpts = append(rcpts, r)
		groups = append(groups, []string{r})
	}
	q, err := queue.Open(queue.Options{Dir: b.TempDir(), Workers: 4, Hostname: "relay.example.test"},
		&proc{groups: groups}, slowDeliverer{wait: time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; q.Close() }()
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), (100<<10)/18)
	env := queue.Envelope{MailFrom: sender, RcptTo: rcpts}
	syncs0 := queue.CommitSyncs()
	// One message at a time, accepted and relayed: ns/op is a message's time in the queue.
	for b.Loop() {
		if _, err := q.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
		for q.Stats().Messages > 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(queue.CommitSyncs()-syncs0)/float64(b.N), "commits/msg")
}
