package smtpfront

import (
	"bytes"
	"context"
	"io"
	"testing"

	"appliance/queue"
)

// BenchmarkCheckedSpooler10MB: a 10 MB message through the end-of-DATA path as the daemon
// wires it (staged in the real spool, checked from there, committed). B/op is what the path
// itself holds per message: its buffers, not the message (before, the check read it whole).
func BenchmarkCheckedSpooler10MB(b *testing.B) {
	q, err := queue.Open(queue.Options{Dir: b.TempDir(), Hostname: "relay.example.test"}, nopProc{}, nopDeliverer{})
	if err != nil {
		b.Fatal(err)
	}
	defer q.Close()
	line := append(bytes.Repeat([]byte("0123456789abcdef"), 4), "\r\n"...)
	msg := append([]byte("From: a@example.test\r\nSubject: big\r\n\r\n"), bytes.Repeat(line, 10<<20/len(line))...)
	s := CheckedSpooler(queueStager{q}, func(_ context.Context, _ queue.Envelope, m *io.SectionReader) (string, error) {
		var head [64]byte
		_, err := m.ReadAt(head[:], 0) // a check that reads as little as ClassifyHead does
		return "", err
	})
	env := queue.Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Accept(context.Background(), env, bytes.NewReader(msg)); err != nil {
			b.Fatal(err)
		}
	}
}
