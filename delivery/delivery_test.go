package delivery_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/delivery"
	"appliance/delivery/smtpsink"
)

const body = "From: a@example.test\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n.leading dot\r\n"

func newSink(t *testing.T, tls bool) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(smtpsink.Options{STARTTLS: tls})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// sinkClient is a sink (with STARTTLS when tls) and a client that delivers to it with opts
// (NextHop and Hostname filled in), closed when the test ends.
func sinkClient(t *testing.T, tls bool, opts delivery.Options) (*smtpsink.Sink, *delivery.Client) {
	t.Helper()
	sink := newSink(t, tls)
	opts.NextHop, opts.Hostname = sink.Addr, "relay.example.test"
	c, err := delivery.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return sink, c
}

type deliverCase struct {
	name     string
	tls      bool
	insecure bool
	require  bool
	setup    func(s *smtpsink.Sink)
	rcpts    []string
	wantErr  string // "", "temp", "perm"
	wantOp   string
	wantCode int
	rcptCode []int  // per recipient, 0 = accepted or refused locally
	rcptPerm []bool // per recipient: refused permanently without a reply
	wantTo   []string
	wantTLS  bool
}

func TestDeliver(t *testing.T) {
	e550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	e451 := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	tests := []deliverCase{
		{name: "ok plain", rcpts: []string{"b@example.test"}, rcptCode: []int{0}, wantTo: []string{"b@example.test"}},
		{name: "ok starttls", tls: true, insecure: true, rcpts: []string{"b@example.test", "c@example.test"},
			rcptCode: []int{0, 0}, wantTo: []string{"b@example.test", "c@example.test"}, wantTLS: true},
		{name: "fail starttls untrusted certificate", tls: true, rcpts: []string{"b@example.test"}, wantErr: "temp", wantOp: "starttls"},
		{name: "fail require tls not offered", require: true, rcpts: []string{"b@example.test"}, wantErr: "temp", wantOp: "starttls"},
		{name: "ok one recipient 550", setup: func(s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e550) },
			rcpts: []string{"b@example.test", "c@example.test"}, rcptCode: []int{0, 550}, wantTo: []string{"b@example.test"}},
		{name: "ok one recipient 451", setup: func(s *smtpsink.Sink) { s.RejectRcpt("b@example.test", e451) },
			rcpts: []string{"b@example.test", "c@example.test"}, rcptCode: []int{451, 0}, wantTo: []string{"c@example.test"}},
		{name: "ok every recipient refused", setup: func(s *smtpsink.Sink) { s.RejectRcpt("b@example.test", e550) },
			rcpts: []string{"b@example.test"}, rcptCode: []int{550}},
		{name: "fail mail 550", setup: func(s *smtpsink.Sink) {
			s.RejectMail(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "go away"})
		},
			rcpts: []string{"b@example.test"}, wantErr: "perm", wantOp: "mail", wantCode: 550},
		{name: "fail data 554", setup: func(s *smtpsink.Sink) {
			s.RejectData(&smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bad content"})
		},
			rcpts: []string{"b@example.test"}, wantErr: "perm", wantOp: "data", wantCode: 554},
		{name: "fail data 451", setup: func(s *smtpsink.Sink) { s.RejectData(e451) },
			rcpts: []string{"b@example.test"}, wantErr: "temp", wantOp: "data", wantCode: 451},
		{name: "ok bad recipient address refused locally", rcpts: []string{"b@example.test", "c@example.test>\r\nRCPT TO:<x@evil.test"},
			rcptCode: []int{0, 0}, rcptPerm: []bool{false, true}, wantTo: []string{"b@example.test"}},
		{name: "fail next hop down", setup: func(s *smtpsink.Sink) { s.Down() },
			rcpts: []string{"b@example.test"}, wantErr: "temp", wantOp: "connect"},
	}
	// Every case both pipelined (the sink offers PIPELINING) and one command at a time.
	for _, pipe := range []bool{true, false} {
		for _, tt := range tests {
			name := tt.name
			if !pipe {
				name += " no pipelining"
			}
			t.Run(name, func(t *testing.T) { testDeliverCase(t, tt, pipe) })
		}
	}
}

func testDeliverCase(t *testing.T, tt deliverCase, pipe bool) {
	sink, c := sinkClient(t, tt.tls, delivery.Options{
		InsecureSkipVerify: tt.insecure, RequireTLS: tt.require,
		ConnectTimeout: 2 * time.Second, CommandTimeout: 5 * time.Second,
		NoPipelining: !pipe,
	})
	if tt.setup != nil {
		tt.setup(sink)
	}
	res, err := c.Deliver(context.Background(), "a@example.test", tt.rcpts, strings.NewReader(body))
	if tt.wantErr != "" {
		var de *delivery.Error
		if !errors.As(err, &de) {
			t.Fatalf("err = %v, want *delivery.Error", err)
		}
		if de.Temporary() != (tt.wantErr == "temp") || de.Op != tt.wantOp || de.Code != tt.wantCode {
			t.Fatalf("err = %v (temp %v op %q code %d), want %s op %q code %d", err, de.Temporary(), de.Op, de.Code, tt.wantErr, tt.wantOp, tt.wantCode)
		}
		if got := sink.Messages(); len(got) != 0 {
			t.Fatalf("sink got %d messages after a failed transaction", len(got))
		}
		return
	}
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(res) != len(tt.rcpts) {
		t.Fatalf("got %d results, want %d", len(res), len(tt.rcpts))
	}
	for i, r := range res {
		if r.Rcpt != tt.rcpts[i] {
			t.Errorf("result %d is for %q, want %q", i, r.Rcpt, tt.rcpts[i])
		}
		code := 0
		var se *smtp.SMTPError
		if tt.rcptPerm != nil && tt.rcptPerm[i] {
			if !errors.Is(r.Err, delivery.ErrBadAddress) || r.Err.(interface{ Temporary() bool }).Temporary() {
				t.Errorf("result %d: %v, want permanent ErrBadAddress", i, r.Err)
			}
			continue
		}
		if r.Err != nil {
			if !errors.As(r.Err, &se) {
				t.Fatalf("result %d error %v does not wrap *smtp.SMTPError", i, r.Err)
			}
			code = se.Code
			if temp := r.Err.(interface{ Temporary() bool }).Temporary(); temp != (code/100 == 4) {
				t.Errorf("result %d: Temporary() = %v for %d", i, temp, code)
			}
		}
		if code != tt.rcptCode[i] {
			t.Errorf("result %d code %d, want %d", i, code, tt.rcptCode[i])
		}
	}
	msgs := sink.Messages()
	if tt.wantTo == nil {
		if len(msgs) != 0 {
			t.Fatalf("sink got %d messages, want none", len(msgs))
		}
		return
	}
	if len(msgs) != 1 {
		t.Fatalf("sink got %d messages, want 1", len(msgs))
	}
	m := msgs[0]
	if strings.Join(m.To, ",") != strings.Join(tt.wantTo, ",") || m.From != "a@example.test" {
		t.Errorf("envelope %q -> %q, want a@example.test -> %q", m.From, m.To, tt.wantTo)
	}
	if string(m.Data) != body {
		t.Errorf("body %q, want %q", m.Data, body)
	}
	if m.TLS != tt.wantTLS {
		t.Errorf("TLS %v, want %v", m.TLS, tt.wantTLS)
	}
	if m.Helo != "relay.example.test" {
		t.Errorf("EHLO %q, want relay.example.test", m.Helo)
	}
}

// A next hop that accepts the connection and then says nothing must not
// hang a worker.
func TestDeliverTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	tests := []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cmdTO  time.Duration
		within time.Duration
	}{
		{name: "fail silent server command timeout", ctx: func() (context.Context, context.CancelFunc) { return context.Background(), func() {} },
			cmdTO: 200 * time.Millisecond, within: 5 * time.Second},
		{name: "fail silent server context cancelled", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, cmdTO: time.Hour, within: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := delivery.New(delivery.Options{NextHop: l.Addr().String(), Hostname: "relay.example.test", CommandTimeout: tt.cmdTO})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err = c.Deliver(ctx, "a@example.test", []string{"b@example.test"}, strings.NewReader(body))
			var de *delivery.Error
			if !errors.As(err, &de) || !de.Temporary() {
				t.Fatalf("err = %v, want temporary *delivery.Error", err)
			}
			if d := time.Since(start); d > tt.within {
				t.Fatalf("took %v", d)
			}
		})
	}
}

func TestDeliverLargeBody(t *testing.T) {
	sink, c := sinkClient(t, true, delivery.Options{InsecureSkipVerify: true})
	var b bytes.Buffer
	b.WriteString("Subject: big\r\n\r\n")
	for b.Len() < 1<<20 {
		b.WriteString(".dot-stuffed line with some text to make it longer 0123456789\r\n")
	}
	if _, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, bytes.NewReader(b.Bytes())); err != nil {
		t.Fatal(err)
	}
	msgs := sink.Messages()
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Data, b.Bytes()) {
		t.Fatal("large body not delivered intact")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		opts delivery.Options
		ok   bool
	}{
		{name: "ok", opts: delivery.Options{NextHop: "127.0.0.1:25", Hostname: "relay.example.test"}, ok: true},
		{name: "fail no port", opts: delivery.Options{NextHop: "127.0.0.1", Hostname: "relay.example.test"}},
		{name: "fail empty hostname", opts: delivery.Options{NextHop: "127.0.0.1:25"}},
		{name: "fail hostname with space", opts: delivery.Options{NextHop: "127.0.0.1:25", Hostname: "a b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := delivery.New(tt.opts)
			if (err == nil) != tt.ok || (err != nil && !errors.Is(err, delivery.ErrInvalidOptions)) {
				t.Fatalf("New: %v", err)
			}
		})
	}
}

func BenchmarkDeliver1MB(b *testing.B) {
	sink, err := smtpsink.Start(smtpsink.Options{Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	c, err := delivery.New(delivery.Options{NextHop: sink.Addr, Hostname: "relay.example.test"})
	if err != nil {
		b.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef012345\r\n"), 1<<20/72)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeliverRoundTrips is a small package to 21 recipients (the 1m load's bulk, in one
// transaction) over a kept-alive connection, pipelined and one command at a time: what the round
// trips cost, the body being small.
func BenchmarkDeliverRoundTrips(b *testing.B) {
	rcpts := []string{"b@example.test"}
	for i := range 20 {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@example.test", i+1))
	}
	for _, pipe := range []bool{true, false} {
		b.Run(fmt.Sprintf("pipelining=%v", pipe), func(b *testing.B) {
			sink, err := smtpsink.Start(smtpsink.Options{Discard: true})
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			c, err := delivery.New(delivery.Options{NextHop: sink.Addr, Hostname: "relay.example.test", NoPipelining: !pipe})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for b.Loop() {
				if _, err := c.Deliver(context.Background(), "a@example.test", rcpts, strings.NewReader(body)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A server that does not know EHLO still gets the mail (over HELO).
func TestDeliverHeloOnly(t *testing.T) {
	got := make(chan string, 1)
	var data, helo string
	addr := delivery.ScriptedHop(t, "220 old.example.test\r\n", func(tp *textproto.Conn, verb, line string) bool {
		switch verb {
		case "EHLO":
			tp.PrintfLine("502 command not recognized")
		case "HELO":
			helo = line
			tp.PrintfLine("250 old.example.test")
		case "MAIL", "RCPT":
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go ahead")
			b, _ := tp.ReadDotBytes()
			data = string(b)
			tp.PrintfLine("250 queued")
		case "QUIT":
			tp.PrintfLine("221 bye")
			got <- helo + "|" + data
			return false
		default:
			tp.PrintfLine("500 what")
		}
		return true
	})
	c, err := delivery.New(delivery.Options{NextHop: addr, Hostname: "relay.example.test", CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, strings.NewReader(body))
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("Deliver: %v %v", res, err)
	}
	c.Close() // QUITs the idle connection
	select {
	case s := <-got:
		if !strings.HasPrefix(s, "HELO relay.example.test|") || !strings.Contains(s, "hello") {
			t.Fatalf("server saw %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("server saw no QUIT")
	}
}

// Connections are reused between transactions, and one the next hop dropped
// while idle is replaced without failing the delivery.
func TestDeliverReuse(t *testing.T) {
	tests := []struct {
		name      string
		maxIdle   int
		between   func(t *testing.T, s *smtpsink.Sink)
		wantConns int
	}{
		{name: "ok reused", wantConns: 1},
		{name: "ok reuse off", maxIdle: -1, wantConns: 3},
		{name: "ok dropped idle connection replaced", wantConns: 3, between: func(t *testing.T, s *smtpsink.Sink) {
			s.Down()
			if err := s.Up(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink, c := sinkClient(t, true, delivery.Options{InsecureSkipVerify: true, MaxIdle: tt.maxIdle, CommandTimeout: 5 * time.Second})
			for i := range 3 {
				if i > 0 && tt.between != nil {
					tt.between(t, sink)
				}
				res, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, strings.NewReader(body))
				if err != nil || res[0].Err != nil {
					t.Fatalf("delivery %d: %v %v", i, res, err)
				}
			}
			msgs := sink.Messages()
			if len(msgs) != 3 {
				t.Fatalf("sink got %d messages, want 3", len(msgs))
			}
			for _, m := range msgs {
				if !m.TLS || m.Helo != "relay.example.test" {
					t.Errorf("TLS %v EHLO %q on a reused connection", m.TLS, m.Helo)
				}
			}
			if got := sink.Connections(); got != tt.wantConns {
				t.Errorf("%d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// pipeliningServer offers PIPELINING and answers MAIL, RCPT and DATA only once DATA has
// arrived: a client that waits for each reply before the next command never gets one. The
// recipient "refused@example.test" gets 550 5.1.1. It takes transactions until QUIT and
// returns each one's recipients and data on got.
func pipeliningServer(t *testing.T, got chan<- string) string {
	t.Helper()
	var replies, rcpts []string
	return delivery.ScriptedHop(t, "220 pipe.example.test\r\n", func(tp *textproto.Conn, verb, line string) bool {
		switch verb {
		case "EHLO":
			tp.PrintfLine("250-pipe.example.test\r\n250-PIPELINING\r\n250 8BITMIME")
		case "MAIL":
			replies, rcpts = append(replies, "250 2.1.0 ok"), nil
		case "RCPT":
			if strings.Contains(line, "refused@") {
				replies = append(replies, "550 5.1.1 no such user")
			} else {
				replies = append(replies, "250 2.1.5 ok")
				rcpts = append(rcpts, line)
			}
		case "DATA":
			for _, r := range append(replies, "354 go ahead") {
				tp.PrintfLine("%s", r)
			}
			replies = nil
			b, err := tp.ReadDotBytes()
			if err != nil {
				return false
			}
			tp.PrintfLine("250 2.0.0 queued")
			got <- strings.Join(rcpts, ",") + "|" + string(b)
		case "QUIT":
			tp.PrintfLine("221 bye")
			return false
		default:
			tp.PrintfLine("500 what")
		}
		return true
	})
}

// With PIPELINING, MAIL, RCPT and DATA go out before any reply is read; the per-recipient
// results and the body are those of one command at a time, and the connection carries the
// next transaction.
func TestDeliverPipelined(t *testing.T) {
	got := make(chan string, 2)
	addr := pipeliningServer(t, got)
	c, err := delivery.New(delivery.Options{NextHop: addr, Hostname: "relay.example.test",
		CommandTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 2 {
		res, err := c.Deliver(context.Background(), "a@example.test",
			[]string{"b@example.test", "refused@example.test", "c@example.test"}, strings.NewReader(body))
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
		var se *smtp.SMTPError
		if res[0].Err != nil || res[2].Err != nil || !errors.As(res[1].Err, &se) ||
			se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 1, 1}) || se.Message != "no such user" {
			t.Fatalf("transaction %d: results %v", i, res)
		}
		select {
		case s := <-got:
			want := "RCPT TO:<b@example.test>,RCPT TO:<c@example.test>|" + strings.ReplaceAll(body, "\r\n.", "\n.")
			if s != strings.ReplaceAll(want, "\r\n", "\n") {
				t.Fatalf("transaction %d: server got %q", i, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("transaction %d: server got nothing", i)
		}
	}
}
