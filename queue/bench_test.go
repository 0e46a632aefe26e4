package queue_test

import (
	"bytes"
	"context"
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
