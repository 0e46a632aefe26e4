package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"appliance/internal/testtext"
	"appliance/queue"
	"appliance/split"
)

// BenchmarkCheckSpooledText: the check at end of DATA (CheckSpooled) of bench/run.sh's plain
// message at 10 KB, 50 KB and 1 MB (a text body of 76-column lines of base64's alphabet,
// random, declared 7bit), sent to 1 To + 20 Bcc, read from a staged copy as the front end
// hands it over. cpu-ns/op is the process's CPU time per check, the garbage collector's
// included (ns/op on a shared machine counts the waits too).
func BenchmarkCheckSpooledText(b *testing.B) {
	r := setup(b)
	p, _ := r.pipeline(b, split.Policy{}, split.PassThroughPolicy{})
	rcpts := []string{"bob@example.test"}
	for i := 1; i <= 20; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@example.test", i))
	}
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcpts}
	ctx := context.Background()
	for _, size := range []struct {
		name string
		n    int
	}{{"10KB", 10 << 10}, {"50KB", 50 << 10}, {"1MB", 1 << 20}} {
		msg := testtext.Message(size.n)
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				class, err := p.CheckSpooled(ctx, env, io.NewSectionReader(bytes.NewReader(msg), 0, int64(len(msg))))
				if err != nil || class != "plain" {
					b.Fatal(class, err)
				}
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
