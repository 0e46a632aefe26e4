package pipeline_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"appliance/internal/testtext"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smime"
	"appliance/split"
)

// BenchmarkProcessSmall: a worker's sealing of bench/run.sh's small shapes on SoftHSM2, from
// the spooled message to every package written out as the queue spools it: 10 KB to 1 To, and
// 50 KB to 1 To + 2 Cc + 3 Bcc (4 packages), self-copy on, the RSA-2048 sender, logging at
// warn as bench/run.sh runs the appliance. The token's work (one signature, one content key,
// one wrap per certificate) is in every op; allocs/op and B/op are the pipeline's own.
// cpu-ns/op is the process's CPU per message, SoftHSM2's and the garbage collector's included.
func BenchmarkProcessSmall(b *testing.B) {
	r := setup(b)
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice},
		Policy: split.Policy{SelfCopy: true}, Hostname: "relay.example.test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, shape := range []struct {
		name  string
		size  int
		rcpts []string
		pkgs  int
	}{
		{"10KB", 10 << 10, []string{"bob@example.test"}, 1},
		{"50KB", 50 << 10, []string{"bob@example.test", "carol@example.test", "dave@example.test",
			"u01@example.test", "u02@example.test", "u03@example.test"}, 4},
	} {
		msg := testtext.Message(shape.size)
		if shape.pkgs > 1 {
			msg = bytes.Replace(msg, []byte("To: bob@example.test\r\n"),
				[]byte("To: bob@example.test\r\nCc: carol@example.test, dave@example.test\r\n"), 1)
		}
		env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: shape.rcpts, Helo: "client.example.test",
			ClientAddr: "127.0.0.1:4000", ReceivedAt: time.Now(), Class: "plain"}
		b.Run(shape.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				s, err := p.Process(ctx, "B1", env, bytes.NewReader(msg))
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Packages) != shape.pkgs {
					b.Fatalf("%d packages, want %d", len(s.Packages), shape.pkgs)
				}
				for _, pk := range s.Packages {
					if _, err := pk.Body.WriteTo(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkProcessLarge: the same from the spooled message on for bench/run.sh's large shapes:
// 1 MB to 1 To + 20 Bcc (21 packages, signed and encrypted), and a 10 MB message the client
// encrypted to the same 21 recipients, split without decrypting. Each op reads the message
// back whole into a buffer of its size, and the 1 MB one encrypts into another; cpu-ns/op
// counts the garbage collector's work as well, which is where a buffer cleared in one call
// that nothing preempts showed (the collector's workers spin waiting to scan that goroutine).
func BenchmarkProcessLarge(b *testing.B) {
	r := setup(b)
	p, _ := r.pipeline(b, split.Policy{SelfCopy: true}, split.PassThroughPolicy{})
	rcpts := []string{"bob@example.test"}
	users := []string{"alice", "bob"}
	for i := 1; i <= 20; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@example.test", i))
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	body := make([]byte, 10<<20)
	rand.Read(body)
	der := r.encrypt(b, append([]byte("Content-Type: application/octet-stream\r\n\r\n"), body...), users, encryptOpts{})
	ctx := context.Background()
	for _, shape := range []struct {
		name  string
		msg   []byte
		class string
	}{
		// Each with the class the check at end of DATA records, as the daemon spools it.
		{"1MB", testtext.Message(1 << 20), smime.Plain.String()},
		{"10MB-enc", mimeMessage("From: alice@example.test\r\nTo: bob@example.test\r\n", envelopedType, der), smime.ClientEncrypted.String()},
	} {
		env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcpts, Helo: "client.example.test",
			ClientAddr: "127.0.0.1:4000", ReceivedAt: time.Now(), Class: shape.class}
		b.Run(shape.name, func(b *testing.B) {
			b.SetBytes(int64(len(shape.msg)))
			b.ReportAllocs()
			start := cpuTime(b)
			for b.Loop() {
				s, err := p.Process(ctx, "B1", env, bytes.NewReader(shape.msg))
				if err != nil {
					b.Fatal(err)
				}
				if len(s.Packages) != len(rcpts) {
					b.Fatalf("%d packages, want %d", len(s.Packages), len(rcpts))
				}
				for _, pk := range s.Packages {
					if _, err := pk.Body.WriteTo(io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
