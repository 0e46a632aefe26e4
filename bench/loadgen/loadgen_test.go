package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestReadData(t *testing.T) {
	tests := []struct {
		name, data, id string
		err            error
	}{
		{"ok message-id", "Subject: x\r\nMessage-ID: <1.a@b>\r\n\r\nbody\r\n.\r\n", "<1.a@b>", nil},
		{"ok case-insensitive name", "message-id:  <2@b> \r\n\r\n.\r\n", "<2@b>", nil},
		{"ok body line is not a header", "Subject: x\r\n\r\nMessage-ID: <no>\r\n.\r\n", "", nil},
		{"ok stuffed dot is data", "Message-ID: <3@b>\r\n\r\n..\r\n.x\r\n.\r\n", "<3@b>", nil},
		{"ok bare lf terminator", "Message-ID: <4@b>\n\n.\n", "<4@b>", nil},
		{"fail truncated", "Message-ID: <5@b>\r\n\r\nbody\r\n", "", errDataTruncated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, n, err := readData(bufio.NewReader(strings.NewReader(tc.data)))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if err == nil && (id != tc.id || n != int64(len(tc.data))) {
				t.Fatalf("got %q after %d bytes, want %q after %d", id, n, tc.id, len(tc.data))
			}
		})
	}
}

func TestReadDataLongLine(t *testing.T) {
	// Lines longer than the reader's buffer: a header line is skipped rather than cut, and the
	// tail of a long body line is never taken for the final dot.
	data := "Message-ID: <6@example.test>\r\n\r\n" + strings.Repeat("a", 13) + ".\r\n" + strings.Repeat("b", 40) + "\r\n.\r\n"
	id, n, err := readData(bufio.NewReaderSize(strings.NewReader(data+"MAIL"), 16))
	if err != nil || id != "" || n != int64(len(data)) {
		t.Fatalf("got %q after %d of %d bytes, err %v", id, n, len(data), err)
	}
}

// pipe is one side of an in-memory SMTP conversation.
type pipe struct {
	io.Reader
	out bytes.Buffer
}

func (p *pipe) Write(b []byte) (int, error) { return p.out.Write(b) }

func TestServeSMTP(t *testing.T) {
	tests := []struct {
		name, in string
		txs      []sinkTx
		replies  []string
	}{
		{"ok pipelined transactions",
			"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nRCPT TO:<e@f>\r\nDATA\r\nMessage-ID: <1@x>\r\n\r\nhi\r\n.\r\n" +
				"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nMessage-ID: <2@x>\r\n\r\n.\r\nQUIT\r\n",
			[]sinkTx{{MessageID: "<1@x>", Rcpts: 2}, {MessageID: "<2@x>", Rcpts: 1}},
			[]string{"220 ", "250-sink", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354 ", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", "221 "}},
		{"fail data without rcpt",
			"HELO x\r\nMAIL FROM:<a@b>\r\nDATA\r\nRSET\r\nQUIT\r\n",
			nil,
			[]string{"220 ", "250 ", "250 2.1.0", "503 ", "250 2.0.0", "221 "}},
		{"fail rcpt without mail", "RCPT TO:<c@d>\r\nNOOP\r\nVRFY x\r\nQUIT\r\n", nil,
			[]string{"220 ", "503 ", "250 ", "502 ", "221 "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &pipe{Reader: strings.NewReader(tc.in)}
			var txs []sinkTx
			if err := serveSMTP(p, p, func(tx sinkTx) { tx.At, tx.Bytes = time.Time{}, 0; txs = append(txs, tx) }); err != nil {
				t.Fatal(err)
			}
			if len(txs) != len(tc.txs) {
				t.Fatalf("transactions %+v, want %+v", txs, tc.txs)
			}
			for i := range txs {
				if txs[i] != tc.txs[i] {
					t.Errorf("transaction %d = %+v, want %+v", i, txs[i], tc.txs[i])
				}
			}
			var replies []string
			for _, l := range strings.Split(strings.TrimRight(p.out.String(), "\r\n"), "\r\n") {
				if strings.HasPrefix(l, "250-") && !strings.HasPrefix(l, "250-sink") {
					continue // EHLO extension lines
				}
				if strings.HasPrefix(l, "250 SIZE") {
					continue
				}
				replies = append(replies, l)
			}
			if len(replies) != len(tc.replies) {
				t.Fatalf("replies %q, want prefixes %q", replies, tc.replies)
			}
			for i, want := range tc.replies {
				if !strings.HasPrefix(replies[i], want) {
					t.Errorf("reply %d = %q, want prefix %q", i, replies[i], want)
				}
			}
		})
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker()
	t0 := time.Now()
	tr.add("<a>", 3, t0)
	tr.add("<b>", 1, t0)
	tr.add("<gone>", 1, t0)
	tr.forget("<gone>")
	tr.onTx(sinkTx{MessageID: "<a>", Rcpts: 1, At: t0.Add(time.Second)})
	tr.onTx(sinkTx{MessageID: "<gone>", Rcpts: 1, At: t0.Add(time.Second)})
	tr.submitted(2)
	select {
	case <-tr.done:
		t.Fatal("fail: done before every recipient was relayed")
	default:
	}
	tr.onTx(sinkTx{MessageID: "<b>", Rcpts: 1, At: t0.Add(2 * time.Second)})
	tr.onTx(sinkTx{MessageID: "<a>", Rcpts: 2, At: t0.Add(3 * time.Second)})
	select {
	case <-tr.done:
	default:
		t.Fatal("fail: not done after every recipient was relayed")
	}
	if tr.packages != 3 || tr.stray != 1 || len(tr.e2e) != 2 || tr.e2e[1] != 3*time.Second {
		t.Fatalf("packages %d stray %d e2e %v", tr.packages, tr.stray, tr.e2e)
	}
}

func TestPercentile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		p    int
		want time.Duration
	}{{50, 5}, {99, 10}, {10, 1}, {100, 10}} {
		if got := percentile(d, tc.p); got != tc.want {
			t.Errorf("ok p%d = %v, want %v", tc.p, got, tc.want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("ok empty: not 0")
	}
}

func TestParseStat(t *testing.T) {
	// Field 2 holds spaces and a ')'; ppid 42; utime+stime+cutime+cstime = 100+50+7+3 ticks.
	stat := "1234 (a b) c) S 42 1 1 0 -1 4194304 100 0 0 0 100 50 7 3 20 0 1 0 10 1000 50"
	p, ok := parseStat([]byte(stat))
	if !ok || p.ppid != 42 || p.cpu != 1600*time.Millisecond {
		t.Fatalf("got %+v, %v", p, ok)
	}
	if _, ok := parseStat([]byte("garbage")); ok {
		t.Fatal("fail garbage: parsed")
	}
	if got := memField([]byte("Rss: 10 kB\nPss:   2048 kB\nPss_Dirty: 1 kB\n"), "Pss:"); got != 2<<20 {
		t.Fatalf("Pss = %d", got)
	}
}

func TestShapes(t *testing.T) {
	for _, tc := range []struct {
		name            string
		rcpts, packages int
	}{{"10k", 1, 1}, {"50k", 6, 4}, {"1m", 21, 21}} {
		s := shapes[tc.name]
		if len(s.rcpts()) != tc.rcpts || s.Packages != tc.packages || s.wraps() != tc.rcpts+1 {
			t.Errorf("ok %s: %d recipients, %d packages", tc.name, len(s.rcpts()), s.Packages)
		}
		b := s.body()
		if len(b) < s.Size || len(b) > s.Size+80 || bytes.Contains(b, []byte("\r\n.")) {
			t.Errorf("ok %s: body of %d bytes", tc.name, len(b))
		}
	}
}

// FuzzReadData: whatever arrives, the reader ends at the first line that is exactly ".",
// never later, and accounts for every byte it consumed.
func FuzzReadData(f *testing.F) {
	f.Add([]byte("Message-ID: <1@x>\r\n\r\nbody\r\n.\r\nMAIL"))
	f.Add([]byte(".\r\n"))
	f.Add([]byte("a\r\n..\r\n.\n"))
	f.Add([]byte("MessAge-ID:0\r0\n.\n")) // a bare CR in the id (found by the fuzzer)
	f.Fuzz(func(t *testing.T, data []byte) {
		id, n, err := readData(bufio.NewReaderSize(bytes.NewReader(data), 16))
		if n > int64(len(data)) {
			t.Fatalf("read %d of %d bytes", n, len(data))
		}
		if err != nil {
			return
		}
		end := data[:n]
		if !bytes.HasSuffix(end, []byte("\n.\r\n")) && !bytes.HasSuffix(end, []byte("\n.\n")) && !bytes.Equal(end, []byte(".\r\n")) && !bytes.Equal(end, []byte(".\n")) {
			t.Fatalf("stopped after %q, not at a final dot", end)
		}
		if strings.ContainsAny(id, "\r\n") {
			t.Fatalf("id %q holds a line end", id)
		}
	})
}

func TestMeasureWire(t *testing.T) {
	bps, cpu, err := measureWire(2, 100<<10, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if bps < 1<<20 {
		t.Fatalf("wire rate %.0f B/s: the sink took in almost nothing", bps)
	}
	if cpu <= 0 {
		t.Fatalf("CPU per byte %g: the floor's own CPU was not measured", cpu)
	}
}

func TestReportWireFloor(t *testing.T) {
	all := []Result{
		{Kind: "relay", Label: "appliance", Shape: "1m", Conns: 8, MsgPerSec: 10, OwnCPUPerMsgMs: 31.25, SinkConns: 4321},
		{Kind: "floor", Label: "hsm-floor", Shape: "1m", MsgPerSec: 100},
		{Kind: "floor", Label: "wire-floor", Shape: "1m", MsgPerSec: 20, OwnCPUPerMsgMs: 27.75},
	}
	var b strings.Builder
	if err := report(&b, all); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(d) wire floor", "b/d", "0.50", "d/c", "0.20", "b/c", "0.10", "31.25", "4321", "27.75"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestSinkCountsConnections(t *testing.T) {
	sk, err := startSink("127.0.0.1:0", func(sinkTx) {})
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	for range 3 {
		if err := pushTransactions(sk.Addr(), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if n := sk.accepted.Load(); n != 3 {
		t.Fatalf("sink counted %d connections, want 3", n)
	}
}

func TestDotStuff(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"a\r\n.b\r\n..c\r\n", "a\r\n..b\r\n...c\r\n"},
		{".x", "..x\r\n"},
		{"no end", "no end\r\n"},
		{"", "\r\n"},
	} {
		if got := string(dotStuff([]byte(tt.in))); got != tt.want {
			t.Errorf("dotStuff(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// freeAddr is a loopback address nothing listens on, for runLoad's sink.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// The generator's submissions, made straight into the sink (the sink is then the relay and
// the next hop at once): every message arrives whole, counted once per recipient.
func TestRunLoadIntoSink(t *testing.T) {
	addr := freeAddr(t)
	sh := shapes["50k"]
	res, err := runLoad(loadOptions{Target: addr, Sink: addr, Shape: sh, Conns: 2,
		Duration: 300 * time.Millisecond, Drain: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages == 0 || res.Failed != 0 || res.Unfinished != 0 {
		t.Fatalf("%d relayed, %d failed, %d unfinished", res.Messages, res.Failed, res.Unfinished)
	}
	if res.SinkConns != 2 {
		t.Errorf("sink saw %d connections, want the generator's 2", res.SinkConns)
	}
	if res.OwnCPUPerMsgMs <= 0 {
		t.Errorf("own CPU per message %g", res.OwnCPUPerMsgMs)
	}
}

// A relay shedding load answers MAIL 451 4.3.2: the generator keeps its connection, says RSET,
// waits and tries again, and counts the refusal as deferred, not failed.
func TestRunLoadShed(t *testing.T) {
	addr := freeAddr(t)
	var sheds atomic.Int64
	res, err := runLoad(loadOptions{Target: addr, Sink: addr, Shape: shapes["10k"], Conns: 2,
		Duration: 300 * time.Millisecond, Drain: 10 * time.Second,
		sinkShed: func() bool { return sheds.Add(1) <= 6 }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Messages == 0 || res.Failed != 0 || res.Unfinished != 0 || res.Deferred != 6 {
		t.Fatalf("%d relayed, %d failed, %d unfinished, %d deferred (want 6)", res.Messages, res.Failed, res.Unfinished, res.Deferred)
	}
	if res.SinkConns != 2 {
		t.Errorf("sink saw %d connections, want the generator's 2 (no dial again after a 451)", res.SinkConns)
	}
}

// The watcher sees the memory and CPU of the process it watches (here the test itself).
func TestWatchTree(t *testing.T) {
	pt, err := watchTree(os.Getpid(), 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64<<20)
	for i := range b {
		b[i] = byte(i)
	}
	time.Sleep(100 * time.Millisecond) // a rescan and several samples while b is held
	rss, cpu := pt.Stop()
	if b[12345] != byte(12345%256) || rss < 64<<20 {
		t.Errorf("peak %d bytes with 64 MB touched", rss)
	}
	if cpu <= 0 {
		t.Errorf("CPU %v after touching 64 MB", cpu)
	}
}
