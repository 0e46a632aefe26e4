package queue_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-smtp"

	"appliance/delivery"
	"appliance/delivery/smtpsink"
	"appliance/queue"
)

const sender = "alice@example.test"

type tempErr struct{ msg string }

func (e tempErr) Error() string   { return e.msg }
func (e tempErr) Temporary() bool { return true }

// proc is a Processor that puts each group of recipients in its own package
// (the rest go together in a last package) and can be told to fail.
type proc struct {
	groups [][]string
	refuse []queue.Refusal
	lose   string               // a recipient left out of every package (a buggy Processor)
	null   bool                 // group packages go out with a null reverse path (list copies)
	fail   func(call int) error // call counts from 1, per message

	mu    sync.Mutex
	calls map[string]int
}

func (p *proc) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.calls == nil {
		p.calls = make(map[string]int)
	}
	p.calls[id]++
	n := p.calls[id]
	p.mu.Unlock()
	if p.fail != nil {
		if err := p.fail(n); err != nil {
			return nil, err
		}
	}
	var s queue.Sealed
	rest := slices.Clone(env.RcptTo)
	for _, g := range p.groups {
		var in []string
		for _, r := range g {
			if i := slices.Index(rest, r); i >= 0 {
				in = append(in, r)
				rest = slices.Delete(rest, i, i+1)
			}
		}
		if len(in) > 0 {
			from := env.MailFrom
			if p.null {
				from = ""
			}
			s.Packages = append(s.Packages, pkg(from, in, data))
		}
	}
	if i := slices.Index(rest, p.lose); i >= 0 {
		rest = slices.Delete(rest, i, i+1)
	}
	for _, r := range p.refuse {
		if i := slices.Index(rest, r.Recipient); i >= 0 {
			rest = slices.Delete(rest, i, i+1)
		}
	}
	if len(rest) > 0 {
		s.Packages = append(s.Packages, pkg(env.MailFrom, rest, data))
	}
	s.Refused = p.refuse
	return &s, nil
}

func pkg(from string, to []string, data []byte) queue.Package {
	hdr := "X-Package-For: " + strings.Join(to, ",") + "\r\n"
	return queue.Package{MailFrom: from, RcptTo: to, Body: bytes.NewReader(append([]byte(hdr), data...))}
}

func (p *proc) callCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, c := range p.calls {
		n += c
	}
	return n
}

func newSink(t *testing.T) *smtpsink.Sink {
	t.Helper()
	s, err := smtpsink.Start(smtpsink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func newDeliverer(t *testing.T, s *smtpsink.Sink) *delivery.Client {
	t.Helper()
	c, err := delivery.New(delivery.Options{NextHop: s.Addr, Hostname: "relay.example.test",
		ConnectTimeout: time.Second, CommandTimeout: 5 * time.Second, DataTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var fastRetry = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}

func baseOpts(dir string) queue.Options {
	return queue.Options{Dir: dir, Workers: 2, Retry: fastRetry, MaxAge: time.Hour, Hostname: "relay.example.test"}
}

// running opens a queue and runs it until the test ends (or stop is called).
func running(t *testing.T, opts queue.Options, p queue.Processor, d queue.Deliverer) (q *queue.Queue, stop func()) {
	t.Helper()
	q, err := queue.Open(opts, p, d)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(context.Background())
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			q.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return q, stop
}

func testMessage(seq int) string {
	return fmt.Sprintf("From: %s\r\nTo: bob@example.test\r\nMessage-ID: <%d@test>\r\nSubject: test %d\r\n\r\nbody %d\r\n", sender, seq, seq, seq)
}

func accept(t *testing.T, q *queue.Queue, seq int, from string, rcpts ...string) string {
	t.Helper()
	id, err := q.Accept(context.Background(), queue.Envelope{MailFrom: from, RcptTo: rcpts}, strings.NewReader(testMessage(seq)))
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	return id
}

func waitEmpty(t *testing.T, q *queue.Queue, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for q.Stats().Messages > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after %v: %+v", timeout, q.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dsnReport is what a test reads back from a DSN.
type dsnReport struct {
	to     []string
	rcpts  map[string]string // Final-Recipient address -> Status
	diags  map[string]string
	action map[string]string
	human  string
}

func parseDSN(t *testing.T, m smtpsink.Message) dsnReport {
	t.Helper()
	if m.From != "" {
		t.Fatalf("DSN MAIL FROM %q, want <>", m.From)
	}
	e, err := message.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatalf("DSN does not parse: %v", err)
	}
	if from := e.Header.Get("From"); !strings.Contains(from, "MAILER-DAEMON@relay.example.test") {
		t.Errorf("DSN From %q", from)
	}
	mt, params, _ := e.Header.ContentType()
	if mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("DSN Content-Type %q %v", mt, params)
	}
	r := dsnReport{to: m.To, rcpts: map[string]string{}, diags: map[string]string{}, action: map[string]string{}}
	mr := e.MultipartReader()
	var types []string
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("DSN part: %v", err)
		}
		pt, _, _ := p.Header.ContentType()
		types = append(types, pt)
		body, _ := io.ReadAll(p.Body)
		switch pt {
		case "text/plain":
			r.human = string(body)
		case "message/delivery-status":
			// Blocks of header fields: per-message, then one per recipient.
			tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(append(body, "\r\n"...))))
			first := true
			for {
				h, err := tr.ReadMIMEHeader()
				if len(h) > 0 {
					if first && h.Get("Reporting-MTA") == "" {
						t.Errorf("no Reporting-MTA in first block")
					}
					if fr := h.Get("Final-Recipient"); fr != "" {
						addr := strings.TrimSpace(strings.TrimPrefix(fr, "rfc822;"))
						r.rcpts[addr] = h.Get("Status")
						r.diags[addr] = h.Get("Diagnostic-Code")
						r.action[addr] = h.Get("Action")
					}
					first = false
				}
				if err != nil {
					break
				}
			}
		}
	}
	if !slices.Equal(types, []string{"text/plain", "message/delivery-status"}) {
		t.Fatalf("DSN parts %v", types)
	}
	return r
}

func split(msgs []smtpsink.Message) (pkgs, dsns []smtpsink.Message) {
	for _, m := range msgs {
		if m.From == "" && bytes.Contains(m.Data, []byte("report-type=delivery-status")) {
			dsns = append(dsns, m)
		} else {
			pkgs = append(pkgs, m)
		}
	}
	return
}

func TestQueue(t *testing.T) {
	e550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	e451 := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	tests := []struct {
		name    string
		from    string
		rcpts   []string
		proc    *proc
		maxAge  time.Duration
		setup   func(t *testing.T, s *smtpsink.Sink)
		during  func(t *testing.T, s *smtpsink.Sink) // after Accept, before waiting
		wantPkg map[string][]string                  // X-Package-For -> envelope recipients
		wantDSN map[string]string                    // recipient -> status; nil: no DSN
		check   func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats)
	}{
		{
			name: "ok one package per group", from: sender,
			rcpts:   []string{"b@example.test", "c@example.test", "d@example.test"},
			proc:    &proc{groups: [][]string{{"d@example.test"}}},
			wantPkg: map[string][]string{"d@example.test": {"d@example.test"}, "b@example.test,c@example.test": {"b@example.test", "c@example.test"}},
		},
		{
			name: "ok 550 for one recipient names only it", from: sender,
			rcpts:   []string{"b@example.test", "c@example.test", "d@example.test"},
			proc:    &proc{groups: [][]string{{"d@example.test"}}},
			setup:   func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e550) },
			wantPkg: map[string][]string{"d@example.test": {"d@example.test"}, "b@example.test,c@example.test": {"b@example.test"}},
			wantDSN: map[string]string{"c@example.test": "5.1.1"},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				_, dsns := split(s.Messages())
				r := parseDSN(t, dsns[0])
				if !strings.Contains(r.diags["c@example.test"], "550 5.1.1 no such user") || r.action["c@example.test"] != "failed" {
					t.Errorf("diagnostic %q action %q", r.diags["c@example.test"], r.action["c@example.test"])
				}
				data := string(dsns[0].Data)
				for _, other := range []string{"b@example.test", "d@example.test"} {
					if strings.Contains(data, other) {
						t.Errorf("DSN names %s, which did not fail", other)
					}
				}
				// b, d and the DSN to the sender.
				if st.Delivered != 3 || st.Failed != 1 || st.DSNs != 1 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name: "ok a null-sender package bounces to no one", from: sender,
			rcpts:   []string{"b@example.test", "c@example.test"},
			proc:    &proc{groups: [][]string{{"c@example.test"}}, null: true},
			setup:   func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e550) },
			wantPkg: map[string][]string{"b@example.test": {"b@example.test"}},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if st.DSNs != 0 || st.Failed != 1 {
					t.Errorf("stats %+v: a list member's failure must not reach the poster", st)
				}
			},
		},
		{
			name: "ok one package per hidden recipient delivered in parallel", from: sender,
			rcpts: []string{"r1@example.test", "r2@example.test", "r3@example.test", "r4@example.test", "r5@example.test", "r6@example.test"},
			proc: &proc{groups: [][]string{{"r1@example.test"}, {"r2@example.test"}, {"r3@example.test"},
				{"r4@example.test"}, {"r5@example.test"}, {"r6@example.test"}}},
			setup: func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("r4@example.test", e550) },
			wantPkg: map[string][]string{"r1@example.test": {"r1@example.test"}, "r2@example.test": {"r2@example.test"},
				"r3@example.test": {"r3@example.test"}, "r5@example.test": {"r5@example.test"}, "r6@example.test": {"r6@example.test"}},
			wantDSN: map[string]string{"r4@example.test": "5.1.1"},
		},
		{
			name: "ok 451 retried until accepted", from: sender,
			rcpts: []string{"b@example.test", "c@example.test"},
			proc:  &proc{},
			setup: func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e451) },
			during: func(t *testing.T, s *smtpsink.Sink) {
				waitFor(t, func() bool { return s.RcptAttempts("c@example.test") >= 3 })
				s.RejectRcpt("c@example.test", nil)
			},
			// b was accepted in the first transaction and is not sent again.
			wantPkg: map[string][]string{"b@example.test,c@example.test": {"b@example.test"}, "b@example.test,c@example.test#2": {"c@example.test"}},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if n := s.RcptAttempts("b@example.test"); n != 1 {
					t.Errorf("b@example.test got %d RCPTs, want 1", n)
				}
			},
		},
		{
			name: "ok next hop down then up", from: sender,
			rcpts: []string{"b@example.test"},
			proc:  &proc{},
			setup: func(t *testing.T, s *smtpsink.Sink) { s.Down() },
			during: func(t *testing.T, s *smtpsink.Sink) {
				time.Sleep(100 * time.Millisecond)
				if err := s.Up(); err != nil {
					t.Fatal(err)
				}
			},
			wantPkg: map[string][]string{"b@example.test": {"b@example.test"}},
		},
		{
			name: "ok temporary process error deferred then sealed", from: sender,
			rcpts: []string{"b@example.test"},
			proc: &proc{fail: func(n int) error {
				if n <= 2 {
					return tempErr{"hsm unavailable"}
				}
				return nil
			}},
			wantPkg: map[string][]string{"b@example.test": {"b@example.test"}},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if n := p.callCount(); n != 3 {
					t.Errorf("Process called %d times, want 3", n)
				}
			},
		},
		{
			name: "ok permanent process error bounces every recipient", from: sender,
			rcpts:   []string{"b@example.test", "c@example.test"},
			proc:    &proc{fail: func(int) error { return errors.New("failed to sign: key \"pkcs11:token=x\" missing") }},
			wantDSN: map[string]string{"b@example.test": "5.0.0", "c@example.test": "5.0.0"},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				_, dsns := split(s.Messages())
				if strings.Contains(string(dsns[0].Data), "pkcs11") {
					t.Error("DSN leaks internal error details")
				}
			},
		},
		{
			name: "ok refusal produces one DSN", from: sender,
			rcpts:   []string{"b@example.test", "c@example.test", "d@example.test"},
			proc:    &proc{refuse: []queue.Refusal{{Recipient: "c@example.test", Status: "5.7.1", Reason: "no certificate"}, {Recipient: "d@example.test", Status: "5.7.1", Reason: "no certificate"}}},
			wantPkg: map[string][]string{"b@example.test": {"b@example.test"}},
			wantDSN: map[string]string{"c@example.test": "5.7.1", "d@example.test": "5.7.1"},
		},
		{
			name: "ok empty processor result bounces", from: sender,
			rcpts:   []string{"c@example.test"},
			proc:    &proc{lose: "c@example.test"},
			wantDSN: map[string]string{"c@example.test": "5.3.0"},
		},
		{
			// A list address is expanded to its members: not in any package.
			name: "ok recipient in no package is not bounced", from: sender,
			rcpts:   []string{"b@example.test", "list@example.test"},
			proc:    &proc{lose: "list@example.test"},
			wantPkg: map[string][]string{"b@example.test": {"b@example.test"}},
		},
		{
			name: "ok expiry bounces with 4.4.7", from: sender, maxAge: 500 * time.Millisecond,
			rcpts:   []string{"b@example.test", "c@example.test"},
			proc:    &proc{},
			setup:   func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e451) },
			wantPkg: map[string][]string{"b@example.test,c@example.test": {"b@example.test"}},
			wantDSN: map[string]string{"c@example.test": "4.4.7"},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if n := s.RcptAttempts("c@example.test"); n < 2 {
					t.Errorf("c@example.test tried %d times before expiry", n)
				}
			},
		},
		{
			name: "ok expiry while sealing bounces", from: sender, maxAge: 200 * time.Millisecond,
			rcpts:   []string{"b@example.test"},
			proc:    &proc{fail: func(int) error { return tempErr{"hsm unavailable"} }},
			wantDSN: map[string]string{"b@example.test": "4.4.7"},
		},
		{
			name: "ok null sender gets no DSN", from: "",
			rcpts:   []string{"b@example.test", "c@example.test"},
			proc:    &proc{},
			setup:   func(t *testing.T, s *smtpsink.Sink) { s.RejectRcpt("c@example.test", e550) },
			wantPkg: map[string][]string{"b@example.test,c@example.test": {"b@example.test"}},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if st.Failed != 1 || st.DSNs != 0 {
					t.Errorf("stats %+v", st)
				}
			},
		},
		{
			name: "ok DSN rejected is not bounced again", from: sender,
			rcpts: []string{"b@example.test"},
			proc:  &proc{},
			setup: func(t *testing.T, s *smtpsink.Sink) {
				s.RejectRcpt("b@example.test", e550)
				s.RejectRcpt(sender, e550)
			},
			check: func(t *testing.T, s *smtpsink.Sink, p *proc, st queue.Stats) {
				if st.DSNs != 1 || s.RcptAttempts(sender) != 1 {
					t.Errorf("stats %+v, DSN attempts %d", st, s.RcptAttempts(sender))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sink := newSink(t)
			if tt.setup != nil {
				tt.setup(t, sink)
			}
			opts := baseOpts(t.TempDir())
			opts.Logger = testLogger(t)
			if tt.maxAge != 0 {
				opts.MaxAge = tt.maxAge
			}
			q, _ := running(t, opts, tt.proc, newDeliverer(t, sink))
			accept(t, q, 1, tt.from, tt.rcpts...)
			if tt.during != nil {
				tt.during(t, sink)
			}
			waitEmpty(t, q, 10*time.Second)

			pkgs, dsns := split(sink.Messages())
			got := map[string][]string{}
			for _, m := range pkgs {
				key := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(string(m.Data), "\r\n", 2)[0], "X-Package-For:"))
				for n := 2; got[key] != nil; n++ {
					key = strings.TrimSuffix(key, fmt.Sprintf("#%d", n-1)) + fmt.Sprintf("#%d", n)
				}
				got[key] = m.To
				if !strings.Contains(string(m.Data), "Message-ID: <1@test>") {
					t.Errorf("package body lost: %q", m.Data)
				}
			}
			if len(got) != len(tt.wantPkg) {
				t.Errorf("packages %v, want %v", got, tt.wantPkg)
			}
			for k, want := range tt.wantPkg {
				if !slices.Equal(got[k], want) {
					t.Errorf("package %q went to %v, want %v", k, got[k], want)
				}
			}
			if tt.wantDSN == nil {
				if len(dsns) != 0 {
					t.Errorf("got %d DSNs, want none", len(dsns))
				}
			} else {
				if len(dsns) != 1 {
					t.Fatalf("got %d DSNs, want 1", len(dsns))
				}
				r := parseDSN(t, dsns[0])
				if !slices.Equal(r.to, []string{sender}) {
					t.Errorf("DSN to %v, want %s", r.to, sender)
				}
				if len(r.rcpts) != len(tt.wantDSN) {
					t.Errorf("DSN reports %v, want %v", r.rcpts, tt.wantDSN)
				}
				for rcpt, status := range tt.wantDSN {
					if r.rcpts[rcpt] != status {
						t.Errorf("DSN status for %s = %q, want %q", rcpt, r.rcpts[rcpt], status)
					}
					if !strings.Contains(r.human, rcpt) {
						t.Errorf("human part does not name %s", rcpt)
					}
				}
			}
			if tt.check != nil {
				tt.check(t, sink, tt.proc, q.Stats())
			}
		})
	}
}

type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testLogger shows the queue's log lines when a test fails (and with -v).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, nil))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAccept(t *testing.T) {
	tests := []struct {
		name    string
		opts    func(o *queue.Options)
		env     queue.Envelope
		body    string
		closed  bool
		wantErr error
	}{
		{name: "ok", env: queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, body: testMessage(1)},
		{name: "ok at size limit", opts: func(o *queue.Options) { o.MaxMessageBytes = int64(len(testMessage(1))) },
			env: queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, body: testMessage(1)},
		{name: "fail over size limit", opts: func(o *queue.Options) { o.MaxMessageBytes = int64(len(testMessage(1))) - 1 },
			env: queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, body: testMessage(1), wantErr: queue.ErrMessageTooBig},
		{name: "fail no recipients", env: queue.Envelope{MailFrom: sender}, body: testMessage(1), wantErr: queue.ErrNoRecipients},
		{name: "fail not enough free space", opts: func(o *queue.Options) { o.MinFreeBytes = 1 << 62 },
			env: queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, body: testMessage(1), wantErr: queue.ErrSpoolUnavailable},
		{name: "fail closed", closed: true, env: queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, body: testMessage(1), wantErr: queue.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			opts := baseOpts(dir)
			if tt.opts != nil {
				tt.opts(&opts)
			}
			sink := newSink(t)
			q, err := queue.Open(opts, &proc{}, newDeliverer(t, sink))
			if err != nil {
				t.Fatal(err)
			}
			if tt.closed {
				q.Close()
			}
			id, err := q.Accept(context.Background(), tt.env, strings.NewReader(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Accept: %v, want %v", err, tt.wantErr)
			}
			tmp, _ := os.ReadDir(filepath.Join(dir, "tmp"))
			if len(tmp) != 0 {
				t.Errorf("temp files left: %v", tmp)
			}
			msgs, _ := os.ReadDir(filepath.Join(dir, "msg"))
			if tt.wantErr != nil {
				if len(msgs) != 0 {
					t.Errorf("refused message left in spool: %v", msgs)
				}
				return
			}
			// Durable before returning: the file is in place, complete.
			data, err := os.ReadFile(filepath.Join(dir, "msg", id))
			if err != nil {
				t.Fatalf("spooled message missing: %v", err)
			}
			if !strings.HasSuffix(string(data), tt.body) || !strings.Contains(string(data), `"b@example.test"`) {
				t.Errorf("spool file %q lacks envelope or body", data)
			}
			if st := q.Stats(); st.Messages != 1 || st.Received != 1 || st.Accepted != 1 {
				t.Errorf("stats %+v", st)
			}
			// The spool is locked while open.
			if _, err := queue.Open(opts, &proc{}, newDeliverer(t, sink)); !errors.Is(err, queue.ErrLocked) {
				t.Fatalf("second Open: %v, want ErrLocked", err)
			}
			q.Close()
			// A new Open of the same spool sees the message (what a crash
			// right after the 250 leaves behind).
			q2, err := queue.Open(opts, &proc{}, newDeliverer(t, sink))
			if err != nil {
				t.Fatal(err)
			}
			defer q2.Close()
			if st := q2.Stats(); st.Received != 1 {
				t.Errorf("reopened stats %+v", st)
			}
		})
	}
}

func TestAcceptIDsSortable(t *testing.T) {
	q, err := queue.Open(baseOpts(t.TempDir()), &proc{}, newDeliverer(t, newSink(t)))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 20 {
		ids = append(ids, accept(t, q, i, sender, "b@example.test"))
	}
	if !slices.IsSorted(ids) {
		t.Errorf("ids not in arrival order: %v", ids)
	}
	if len(slices.Compact(slices.Clone(ids))) != len(ids) {
		t.Error("duplicate ids")
	}
}

// Close mid-way, reopen, and every recipient gets every message exactly once.
// The next hop defers c until the restart, so every message is in the spool
// at Close, half delivered, and only recovery can finish it.
func TestRestartRecovery(t *testing.T) {
	const n = 30
	dir := t.TempDir()
	sink := newSink(t)
	sink.RejectRcpt("c@example.test", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "until the restart"})
	p := &proc{groups: [][]string{{"c@example.test"}}}
	opts := baseOpts(dir)
	q, stop := running(t, opts, p, newDeliverer(t, sink))
	// Concurrent Accepts also exercise the shared directory fsync.
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			env := queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test", "c@example.test"}}
			if _, err := q.Accept(context.Background(), env, strings.NewReader(testMessage(i))); err != nil {
				t.Errorf("Accept: %v", err)
			}
		})
	}
	wg.Wait()
	// Every b delivered: every message is sealed and has c pending.
	if _, err := sink.Wait(n, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	stop()
	if st := q.Stats(); st.Messages != n {
		t.Fatalf("%d messages in the spool at Close, want %d (c deferred)", st.Messages, n)
	}

	sink.RejectRcpt("c@example.test", nil)
	q2, err := queue.Open(opts, p, newDeliverer(t, sink))
	if err != nil {
		t.Fatal(err)
	}
	if st := q2.Stats(); st.Messages != n || st.Received != 0 || st.Pending != n {
		t.Fatalf("recovered %d messages, %d unsealed, %d packages pending; want %d, 0, %d", st.Messages, st.Received, st.Pending, n, n)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		q2.Run(context.Background())
	}()
	t.Cleanup(func() {
		q2.Close()
		<-done
	})
	waitEmpty(t, q2, 20*time.Second)
	if p.callCount() != n {
		t.Errorf("Process called %d times for %d messages: recovery sealed again", p.callCount(), n)
	}
	seen := map[string]int{}
	for _, m := range sink.Messages() {
		id := strings.SplitN(strings.SplitN(string(m.Data), "Message-ID: ", 2)[1], "\r\n", 2)[0]
		for _, r := range m.To {
			seen[id+" "+r]++
		}
	}
	if len(seen) != 2*n {
		t.Errorf("got %d (message, recipient) pairs, want %d", len(seen), 2*n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s delivered %d times", k, c)
		}
	}
	for _, sub := range []string{"msg", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(dir, sub))
		// Finished files kept for reuse are fine; anything else is not.
		ents = slices.DeleteFunc(ents, func(e os.DirEntry) bool { return sub == "tmp" && strings.HasPrefix(e.Name(), "free-") })
		if len(ents) != 0 {
			t.Errorf("%s not empty after all delivered: %d files", sub, len(ents))
		}
	}
}

// A sealed message is not sealed again after a restart, and a recipient
// recorded as delivered is not sent to again.
func TestReopenKeepsProgress(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t)
	sink.RejectRcpt("c@example.test", &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"})
	p := &proc{}
	opts := baseOpts(dir)
	opts.Retry = []time.Duration{time.Hour}
	q, stop := running(t, opts, p, newDeliverer(t, sink))
	accept(t, q, 1, sender, "b@example.test", "c@example.test")
	waitFor(t, func() bool { return q.Stats().Deferred == 1 })
	stop()
	if n := p.callCount(); n != 1 {
		t.Fatalf("Process called %d times before restart", n)
	}

	sink.RejectRcpt("c@example.test", nil)
	opts.Retry = fastRetry
	// Due times come from the stored state: move the clock past the hour.
	opts.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	q2, _ := running(t, opts, p, newDeliverer(t, sink))
	waitEmpty(t, q2, 10*time.Second)
	if n := p.callCount(); n != 1 {
		t.Errorf("Process called %d times, want 1 (no re-seal after restart)", n)
	}
	if n := sink.RcptAttempts("b@example.test"); n != 1 {
		t.Errorf("b@example.test sent %d times, want 1", n)
	}
	msgs := sink.Messages()
	if len(msgs) != 2 || !slices.Equal(msgs[1].To, []string{"c@example.test"}) {
		t.Errorf("transactions %v", msgs)
	}
}

func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t)
	q, err := queue.Open(baseOpts(dir), &proc{}, newDeliverer(t, sink))
	if err != nil {
		t.Fatal(err)
	}
	id := accept(t, q, 1, sender, "b@example.test")
	q.Close()
	// What a crash mid-Accept and mid-seal leave behind: a temp file, and
	// a message file with the start of a commit that never finished.
	half := filepath.Join(dir, "tmp", "0000000000000000aaaaaaaaaa.123.tmp")
	if err := os.WriteFile(half, []byte("From: half\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := filepath.Join(dir, "msg", id)
	whole, err := os.ReadFile(msg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(msg, append(slices.Clone(whole), "\x00SF2P\x00\x00\x00From: half\r\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	q2, err := queue.Open(baseOpts(dir), &proc{}, newDeliverer(t, sink))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(half); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s not removed on open: %v", half, err)
	}
	if got, err := os.ReadFile(msg); err != nil || !bytes.Equal(got, whole) {
		t.Errorf("message file after open: %v, %d bytes, want the %d committed ones", err, len(got), len(whole))
	}
	q2.Close()
	q3, _ := running(t, baseOpts(dir), &proc{}, newDeliverer(t, sink))
	waitEmpty(t, q3, 10*time.Second)
	msgs := sink.Messages()
	if len(msgs) != 1 || strings.Contains(string(msgs[0].Data), "half") {
		t.Errorf("delivered %d messages: %v", len(msgs), msgs)
	}
}

func TestOpenRefusesCorruptState(t *testing.T) {
	const id = "0000000000000000aaaaaaaaaa"
	tests := []struct {
		name  string
		write func(dir string) error
	}{
		{name: "fail format 1 state", write: func(dir string) error {
			os.MkdirAll(filepath.Join(dir, "state"), 0o700)
			return os.WriteFile(filepath.Join(dir, "state", id+".json"), []byte("{}"), 0o600)
		}},
		{name: "fail format 1 message", write: func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "msg", id), []byte("appliance-spool 1\n{\"RcptTo\":[\"b@example.test\"]}\nFrom: x\r\n"), 0o600)
		}},
		{name: "fail message without header", write: func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "msg", id), []byte("From: x\r\n"), 0o600)
		}},
		{name: "fail body cut short", write: func(dir string) error {
			return os.WriteFile(filepath.Join(dir, "msg", id), []byte("appliance-spool 2\n0000000000000100\n{\"RcptTo\":[\"b@example.test\"]}\nFrom: x\r\n"), 0o600)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "msg"), 0o700)
			if err := tt.write(dir); err != nil {
				t.Fatal(err)
			}
			_, err := queue.Open(baseOpts(dir), &proc{}, newDeliverer(t, newSink(t)))
			if !errors.Is(err, queue.ErrBadSpoolFile) {
				t.Fatalf("Open: %v, want ErrBadSpoolFile", err)
			}
			t.Log(err)
		})
	}
}

func BenchmarkAccept10KB(b *testing.B) {
	dir := b.TempDir()
	sink, err := smtpsink.Start(smtpsink.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	d, _ := delivery.New(delivery.Options{NextHop: sink.Addr, Hostname: "relay.example.test"})
	q, err := queue.Open(queue.Options{Dir: dir}, &proc{}, d)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 10<<10)
	env := queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := q.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
			b.Fatal(err)
		}
	}
}

// Concurrent Accepts share directory fsyncs (group commit).
func BenchmarkAccept10KBParallel(b *testing.B) {
	sink, err := smtpsink.Start(smtpsink.Options{Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	d, _ := delivery.New(delivery.Options{NextHop: sink.Addr, Hostname: "relay.example.test"})
	q, err := queue.Open(queue.Options{Dir: b.TempDir()}, &proc{}, d)
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 10<<10)
	env := queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// Accept to delivered at the sink, 10 KB messages, one package each: the
// queue's own overhead next to Postfix's ~670 msg/s (README, Benchmark).
func BenchmarkThroughput10KB(b *testing.B) {
	sink, err := smtpsink.Start(smtpsink.Options{Discard: true})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	d, _ := delivery.New(delivery.Options{NextHop: sink.Addr, Hostname: "relay.example.test"})
	q, err := queue.Open(queue.Options{Dir: b.TempDir(), Workers: 8, Hostname: "relay.example.test"}, &proc{}, d)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; q.Close() }()
	body := bytes.Repeat([]byte("0123456789abcdef\r\n"), 10<<10/18)
	env := queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}
	b.SetBytes(int64(len(body)))
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := q.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
				b.Error(err)
				return
			}
		}
	})
	for q.Stats().Messages > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
