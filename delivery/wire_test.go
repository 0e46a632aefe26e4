package delivery_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"appliance/delivery"
	"appliance/delivery/smtpsink"
	"appliance/queue"
)

// splitBody is a package body of its own head followed by a tail it shares with the other
// packages of its message (queue.SharedBody), as sealed packages share the base64 of their
// encrypted content.
type splitBody struct {
	head string
	tail *tailPart
}

type tailPart struct{ b []byte }

func (t *tailPart) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(t.b)
	return int64(n), err
}

func (b *splitBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, b.head)
	if err != nil {
		return int64(n), err
	}
	m, err := b.tail.WriteTo(w)
	return int64(n) + m, err
}

func (b *splitBody) SplitBody() (head, shared io.WriterTo) { return strings.NewReader(b.head), b.tail }

func (b *splitBody) bytes() []byte { return append([]byte(b.head), b.tail.b...) }

// splitProc seals every message into one package per recipient, each its own head and the
// message's one tail.
type splitProc struct {
	head func(rcpt string) string
	tail *tailPart
}

func (p *splitProc) Process(_ context.Context, _ string, env queue.Envelope, _ io.Reader) (*queue.Sealed, error) {
	s := &queue.Sealed{}
	for _, r := range env.RcptTo {
		s.Packages = append(s.Packages, queue.Package{MailFrom: env.MailFrom, RcptTo: []string{r},
			Body: &splitBody{head: p.head(r), tail: p.tail}})
	}
	return s, nil
}

// relay spools one message to rcpts through a real queue, has p seal it and the client deliver
// its packages to sink, and returns what the sink received per recipient.
func relay(t *testing.T, p *splitProc, c *delivery.Client, sink *smtpsink.Sink, rcpts []string) map[string][]byte {
	t.Helper()
	q, err := queue.Open(queue.Options{Dir: t.TempDir(), Hostname: "relay.example.test"}, p, c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; q.Close() }()
	before := len(sink.Messages())
	if _, err := q.Accept(ctx, queue.Envelope{MailFrom: "a@example.test", RcptTo: rcpts}, strings.NewReader("body\r\n")); err != nil {
		t.Fatal(err)
	}
	msgs, err := sink.Wait(before+len(rcpts), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]byte{}
	for _, m := range msgs[before:] {
		got[m.To[0]] = m.Data
	}
	return got
}

// TestDeliverWireTail: packages whose shared tail is in wire form reach the next hop byte for
// byte with the tail sent from the spool file as it is (sendfile) when the next hop is plain
// TCP, pipelined or not, whatever their heads end with; a tail with lines begun by '.' (one of
// them a lone '.', which unstuffed would end the data), a bare LF or no last line end is
// stuffed like the rest, and so is any tail sent over TLS. A dot-leading line that went out
// unstuffed would lose its dot at the sink (or end the message there), and the bytes would
// differ; the count of bytes sent from the file tells which way each tail went.
func TestDeliverWireTail(t *testing.T) {
	b64 := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZ\r\n", 2000)
	rcpts := []string{"b@example.test", "c@example.test", "d@example.test"}
	headOf := func(r string) string {
		return "Received: by relay.example.test\r\nTo: " + r + "\r\nContent-Type: application/pkcs7-mime\r\n\r\nTUlJ\r\n"
	}
	tests := []struct {
		name     string
		tail     string
		head     func(string) string
		tls      bool
		nopipe   bool
		sendfile bool
	}{
		{name: "base64 tail, pipelined", tail: b64, sendfile: true},
		{name: "base64 tail, one command at a time", tail: b64, nopipe: true, sendfile: true},
		{name: "base64 tail over TLS", tail: b64, tls: true},
		{name: "tail with dot lines", tail: b64 + ".leading dot\r\n" + b64 + ".\r\n" + b64 + "..\r\n"},
		{name: "tail with dot lines, one command at a time", tail: ".\r\n" + b64 + ".x\r\n", nopipe: true},
		{name: "tail with a bare LF", tail: b64 + "QUJD\n.QUJD\r\n"},
		{name: "tail without its last line end", tail: b64 + ".QUJD"},
		{name: "head not ending a line", tail: b64, sendfile: true,
			head: func(r string) string { return "To: " + r + "\r\n\r\nTUlJ" }},
		{name: "head ending in a bare LF", tail: b64, sendfile: true,
			head: func(r string) string { return "To: " + r + "\n\n.TUlJ\n" }},
		{name: "head not ending a line, tail begun by a dot", tail: ".QUJD\r\n" + b64,
			head: func(r string) string { return "To: " + r + "\r\n\r\nTUlJ" }},
		{name: "empty head", tail: b64, head: func(string) string { return "" }, sendfile: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink, c := sinkClient(t, tt.tls, delivery.Options{InsecureSkipVerify: true, NoPipelining: tt.nopipe})
			head := tt.head
			if head == nil {
				head = headOf
			}
			p := &splitProc{head: head, tail: &tailPart{b: []byte(tt.tail)}}
			before := delivery.TailBytes()
			got := relay(t, p, c, sink, rcpts)
			for _, r := range rcpts {
				want := dataForm((&splitBody{head: head(r), tail: p.tail}).bytes())
				if !bytes.Equal(got[r], want) {
					t.Errorf("%s: the next hop got %d bytes, want %d (%s)", r, len(got[r]), len(want), firstDiff(got[r], want))
				}
			}
			sent := delivery.TailBytes() - before
			want := int64(0)
			if tt.sendfile {
				want = int64(len(rcpts) * (len(tt.tail) - 2))
			}
			if sent != want {
				t.Errorf("%d bytes went from the spool file unstuffed, want %d", sent, want)
			}
		})
	}
}

// dataForm is b as a DATA transaction carries it: a bare LF becomes CRLF, and a last line
// without its end gets one.
func dataForm(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, "\r\n"...)
	}
	return out
}

func firstDiff(got, want []byte) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at %d: %q, want %q", i, got[i:min(i+20, len(got))], want[i:min(i+20, len(want))])
		}
	}
	return "one is a prefix of the other"
}

// fileBody is a package as the queue hands it over: a head, then a tail in a spool file.
type fileBody struct {
	io.Reader
	head []byte
	tail queue.WireTail
}

func (b *fileBody) WireTail() (io.Reader, queue.WireTail, bool) {
	return bytes.NewReader(b.head), b.tail, true
}

// BenchmarkDeliverWireTail is one 1 MB message's 21 packages (a 1.4 MB base64 tail they share
// in one spool file, a head of their own) delivered to a plaintext sink over a kept-alive
// connection: with the tail read, stuffed and written (stuffed, what delivery did before), and
// sent from the file by sendfile (sendfile). The next hop is discardHop, which costs little
// beside the client; cpu-ms/msg is the process's CPU time per message, both sides included.
func BenchmarkDeliverWireTail(b *testing.B) {
	tail := []byte(strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZ\r\n", 1400<<10/72))
	head := []byte("Received: by relay.example.test\r\nTo: b@example.test\r\nContent-Type: application/pkcs7-mime\r\n\r\n" +
		strings.Repeat("TUlJQ0FRWUpLb1pJaHZjTkFRY0RvSUlDQURDQ0Fmd0NBUUF4Z2dHM01JSUJzd0lCQURDQm1q\r\n", 6))
	f, err := os.CreateTemp(b.TempDir(), "spool")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	const off = 4096
	if _, err := f.WriteAt(tail, off); err != nil {
		b.Fatal(err)
	}
	for _, sendfile := range []bool{false, true} {
		name := "stuffed"
		if sendfile {
			name = "sendfile"
		}
		b.Run(name, func(b *testing.B) {
			c, err := delivery.New(delivery.Options{NextHop: discardHop(b), Hostname: "relay.example.test"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(21 * (len(head) + len(tail))))
			cpu0 := cpuTime()
			for b.Loop() {
				for range 21 {
					r := io.MultiReader(bytes.NewReader(head), io.NewSectionReader(f, off, int64(len(tail))))
					var body io.Reader = r
					if sendfile {
						body = &fileBody{Reader: r, head: head, tail: queue.WireTail{File: f, Off: off, Len: int64(len(tail))}}
					}
					if _, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, body); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/msg")
		})
	}
}

// cpuTime is the process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardHop is a next hop that offers PIPELINING, accepts every command and throws the data
// away, finding its end in large reads: the least a next hop can cost.
func discardHop(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go discardConn(c)
		}
	}()
	return l.Addr().String()
}

func discardConn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 256<<10)
	io.WriteString(c, "220 discard.example.test\r\n")
	var replies []byte
	end := []byte("\r\n.\r\n")
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		switch strings.ToUpper(string(line[:min(4, len(line))])) {
		case "EHLO":
			io.WriteString(c, "250-discard.example.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
		case "MAIL", "RCPT":
			replies = append(replies, "250 ok\r\n"...)
		case "DATA":
			c.Write(append(replies, "354 go ahead\r\n"...))
			replies = replies[:0]
			prev := []byte("\r\n") // the DATA line's end: the data may be ".\r\n" at once
			for {
				if _, err := br.Peek(1); err != nil {
					return
				}
				buf, _ := br.Peek(br.Buffered())
				// The end may straddle what was read before: look at its last 4 bytes too.
				joined := append(append([]byte(nil), prev...), buf[:min(4, len(buf))]...)
				if i := bytes.Index(joined, end); i >= 0 {
					br.Discard(i + len(end) - len(prev))
					break
				}
				if i := bytes.Index(buf, end); i >= 0 {
					br.Discard(i + len(end))
					break
				}
				prev = append(prev[:0], buf[max(0, len(buf)-4):]...)
				br.Discard(len(buf))
			}
			io.WriteString(c, "250 ok\r\n")
		case "QUIT":
			io.WriteString(c, "221 bye\r\n")
			return
		default:
			io.WriteString(c, "250 ok\r\n")
		}
	}
}

// TestDeliverWireTailStalled: a next hop that stops reading in the middle of a tail sent from
// the file fails the transaction (temporary) once the command timeout passes without progress,
// or when the context ends, as it does for stuffed bodies; the send does not hang.
func TestDeliverWireTailStalled(t *testing.T) {
	line := "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZ\r\n"
	tail := []byte(strings.Repeat(line, 32<<20/len(line))) // more than loopback's socket buffers
	f, err := os.CreateTemp(t.TempDir(), "spool")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	head := []byte("To: b@example.test\r\n\r\n")
	tests := []struct {
		name  string
		cmdTO time.Duration
		ctxTO time.Duration
	}{
		{name: "command timeout", cmdTO: 300 * time.Millisecond, ctxTO: time.Hour},
		{name: "context ended", cmdTO: time.Hour, ctxTO: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := stallingHop(t)
			c, err := delivery.New(delivery.Options{NextHop: addr, Hostname: "relay.example.test", CommandTimeout: tt.cmdTO})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), tt.ctxTO)
			defer cancel()
			body := &fileBody{Reader: strings.NewReader("unused"), head: head, tail: queue.WireTail{File: f, Off: 0, Len: int64(len(tail))}}
			before := delivery.TailBytes()
			done := make(chan error, 1)
			go func() {
				_, err := c.Deliver(ctx, "a@example.test", []string{"b@example.test"}, body)
				done <- err
			}()
			select {
			case err = <-done:
			case <-time.After(time.Minute):
				t.Fatal("Deliver hangs on a next hop that does not read")
			}
			var de *delivery.Error
			if !errors.As(err, &de) || !de.Temporary() || de.Op != "data" {
				t.Fatalf("err = %v, want a temporary *delivery.Error of data", err)
			}
			if sent := delivery.TailBytes() - before; sent <= 0 || sent >= int64(len(tail)) {
				t.Fatalf("%d bytes of the %d-byte tail sent from the file, want some and not all", sent, len(tail))
			}
		})
	}
}

// stallingHop offers PIPELINING, answers MAIL, RCPT and DATA, and then reads nothing more.
func stallingHop(t *testing.T) string {
	t.Helper()
	stop := make(chan struct{})
	addr := delivery.ScriptedHop(t, "220 stall.example.test\r\n", func(tp *textproto.Conn, verb, _ string) bool {
		switch verb {
		case "EHLO":
			tp.PrintfLine("250-stall.example.test\r\n250 PIPELINING")
		case "DATA":
			tp.PrintfLine("354 go ahead")
			<-stop
			return false
		default:
			tp.PrintfLine("250 ok")
		}
		return true
	})
	t.Cleanup(func() { close(stop) })
	return addr
}
