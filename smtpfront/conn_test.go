package smtpfront

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startData opens a transaction and returns at the 354.
func startData(t *testing.T, addr string) *rawConn {
	t.Helper()
	rc := dialRaw(t, addr)
	rc.cmd("EHLO client.example.test")
	if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != "250 2.0.0" {
		t.Fatalf("MAIL = %q", got)
	}
	if got := rc.cmd("RCPT TO:<bob@example.test>"); code(got) != "250 2.0.0" {
		t.Fatalf("RCPT = %q", got)
	}
	if got := rc.cmd("DATA"); !strings.HasPrefix(got, "354") {
		t.Fatalf("DATA = %q", got)
	}
	return rc
}

// trickle writes s one byte per gap until stop is closed or a write fails.
func trickle(c net.Conn, s string, gap time.Duration, stop <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			if _, err := c.Write([]byte{s[i%len(s)]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(gap):
			}
		}
	}()
	return done
}

// readToClose reads what the server says until it closes, within limit.
func readToClose(t *testing.T, rc *rawConn, limit time.Duration) string {
	t.Helper()
	_ = rc.c.SetReadDeadline(time.Now().Add(limit))
	rest, err := io.ReadAll(rc.r)
	if err != nil && !(errors.Is(err, syscall.ECONNRESET) && len(rest) > 0) {
		// A reset after the last reply is the client's own writes
		// meeting a closed socket.
		t.Fatalf("connection not closed by the server within %v: %v (read %q)", limit, err, rest)
	}
	return string(rest)
}

// TestMinRateClosesTrickle: a client that sends one byte per second is
// never idle for ReadTimeout, but it is below the minimum rate and is
// closed with 421 4.4.2 after about one MinRateInterval; inside DATA and
// inside a command line.
func TestMinRateClosesTrickle(t *testing.T) {
	tests := []struct {
		name string
		data bool
	}{
		{"fail trickle inside data", true},
		{"fail trickle inside a command line", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			// Idle would need 5s of silence and DATA's budget is 10
			// minutes: only the rate can end this within the bound.
			ts := startServer(t, Options{ReadTimeout: 5 * time.Second, MinRateBytes: 1000, MinRateInterval: time.Second}, spool, newTestPolicy())
			var rc *rawConn
			var drip string
			if tt.data {
				rc = startData(t, ts.addr)
				rc.send("From: alice@example.test\r\n\r\n")
				drip = "x"
			} else {
				rc = dialRaw(t, ts.addr)
				rc.cmd("EHLO client.example.test")
				drip = "NOOP NOOP NOOP NOOP NOOP "
			}
			stop := make(chan struct{})
			done := trickle(rc.c, drip, time.Second, stop)
			start := time.Now()
			// Documented: closed after one MinRateInterval of waiting (1s
			// here); 20s is a margin for a busy machine, far below the
			// 10 minutes the trickle would otherwise last.
			got := readToClose(t, rc, 20*time.Second)
			close(stop)
			<-done
			if !strings.HasPrefix(got, "421 4.4.2") {
				t.Errorf("server said %q, want 421 4.4.2 and close", got)
			}
			if !strings.Contains(ts.logText(), "transfer rate below the minimum") {
				t.Errorf("log does not say the rate closed it:\n%s", ts.logText())
			}
			if tt.data {
				// The client sees the close before the session has
				// cleaned up; its log line says it has.
				waitLog(t, ts, "message refused")
			}
			if n := len(spool.messages(t)); n != 0 {
				t.Errorf("partial message spooled: %d\n%s", n, ts.logText())
			}
			if st := ts.srv.Stats(); st.RateClosed != 1 {
				t.Errorf("RateClosed = %d, want 1", st.RateClosed)
			}
			t.Logf("closed after %v", time.Since(start))
		})
	}
}

// TestSlowSteadyUploadNotClosed: an upload well above the minimum rate
// whose 64 KB buffers each take longer than ReadTimeout to fill is taken:
// the idle deadline is pushed forward on every read of the socket.
func TestSlowSteadyUploadNotClosed(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{ReadTimeout: time.Second, MinRateBytes: 1000, MinRateInterval: time.Second}, spool, newTestPolicy())
	rc := startData(t, ts.addr)
	rc.send("From: alice@example.test\r\nSubject: slow\r\n\r\n")
	line := strings.Repeat("s", 78) + "\r\n" // 80 bytes
	chunk := strings.Repeat(line, 50)        // 4000 bytes
	// 40 chunks, one per 100ms: 160 KB at about 40 KB/s, forty times the
	// minimum; each 64 KB buffer takes about 1.6s, over ReadTimeout.
	for i := 0; i < 40; i++ {
		rc.send(chunk)
		time.Sleep(100 * time.Millisecond)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if got := rc.cmd("."); code(got) != "250 2.0.0" {
		t.Fatalf("end of DATA = %q, want 250 (log:\n%s)", got, ts.logText())
	}
	msgs := spool.messages(t)
	if len(msgs) != 1 {
		t.Fatalf("spooled %d messages, want 1", len(msgs))
	}
	for _, b := range msgs {
		if !strings.HasSuffix(string(b), strings.Repeat(chunk, 40)) {
			t.Errorf("body not spooled whole: %d bytes", len(b))
		}
	}
	if st := ts.srv.Stats(); st.RateClosed != 0 {
		t.Errorf("RateClosed = %d", st.RateClosed)
	}
}

// TestMaxConnsGlobal: past MaxConns a connection gets 421 4.7.0 and is
// closed at once; the open count (and so the descriptors held) stays at
// the limit.
func TestMaxConnsGlobal(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{MaxConns: 3, ReservedTrustedConns: -1, StressConns: -1}, newFileSpool(t), newTestPolicy())
	for i := 0; i < 3; i++ {
		dialRaw(t, ts.addr)
	}
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(got), "421 4.7.0 too many connections") {
			t.Fatalf("connection over the limit got %q", got)
		}
	}
	if st := ts.srv.Stats(); st.Open != 3 || st.RefusedTotal != 5 {
		t.Errorf("stats %+v, want 3 open and 5 refused", st)
	}
}

// TestTrustedLimitedApart: trusted submitters have their own per-address
// limit, and only they may take the reserved slots.
func TestTrustedLimitedApart(t *testing.T) {
	t.Parallel()
	t.Run("fail untrusted in the reserve", func(t *testing.T) {
		t.Parallel()
		ts := startServer(t, Options{MaxConns: 4, ReservedTrustedConns: 2, StressConns: -1}, newFileSpool(t), newTestPolicy())
		dialRaw(t, ts.addr)
		dialRaw(t, ts.addr)
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, _ := io.ReadAll(c); !strings.HasPrefix(string(got), "421 4.7.0 too many connections") {
			t.Fatalf("untrusted third connection got %q", got)
		}
	})
	t.Run("ok trusted past the per-address limit of others", func(t *testing.T) {
		t.Parallel()
		lo := mustPrefix(t, "127.0.0.0/8")
		ts := startServer(t, Options{MaxConns: 10, ReservedTrustedConns: 5, MaxConnsPerIP: 1,
			MaxConnsPerTrustedIP: 7, TrustedNets: lo, StressConns: -1}, newFileSpool(t), newTestPolicy())
		for i := 0; i < 7; i++ { // past MaxConnsPerIP and into the reserve
			dialRaw(t, ts.addr)
		}
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if got, _ := io.ReadAll(c); !strings.HasPrefix(string(got), "421 4.7.0 too many connections from your address") {
			t.Fatalf("eighth trusted connection got %q", got)
		}
		if st := ts.srv.Stats(); st.Trusted != 7 {
			t.Errorf("Trusted = %d, want 7", st.Trusted)
		}
	})
}

// TestStressCutsIdle: when StressConns is reached, connections idle longer
// than StressReadTimeout are closed (their old 1-minute idle cut short)
// while a client that keeps talking is served.
func TestStressCutsIdle(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	// The worker's round trips take milliseconds; 2s leaves a wide margin on a busy machine.
	ts := startServer(t, Options{MaxConns: 20, StressConns: 4, ReadTimeout: time.Minute,
		StressReadTimeout: 2 * time.Second}, spool, newTestPolicy())
	var idle []*rawConn
	for i := 0; i < 3; i++ {
		rc := dialRaw(t, ts.addr)
		rc.cmd("EHLO idle.example.test")
		idle = append(idle, rc)
	}
	if ts.srv.Stats().Stressed {
		t.Fatal("stressed below StressConns")
	}
	// The fourth connection brings stress; it works through a message
	// without pausing, so the shortened idle never touches it.
	w := dialRaw(t, ts.addr)
	w.cmd("EHLO worker.example.test")
	w.cmd("MAIL FROM:<alice@example.test>")
	w.cmd("RCPT TO:<bob@example.test>")
	w.cmd("DATA")
	if got := w.cmd("From: alice@example.test\r\n\r\nhello\r\n."); code(got) != "250 2.0.0" {
		t.Fatalf("working client: %q", got)
	}
	for _, rc := range idle {
		// Closed well before their 1-minute idle timeout.
		if got := readToClose(t, rc, 20*time.Second); !strings.HasPrefix(got, "421 4.4.2") {
			t.Errorf("idle connection got %q, want 421 4.4.2", got)
		}
	}
	if st := ts.srv.Stats(); st.StressEntered < 1 {
		t.Errorf("stats %+v: stress never entered", st)
	}
	if n := len(spool.messages(t)); n != 1 {
		t.Errorf("spooled %d, want 1", n)
	}
}

func TestRefusedConnectionsDoNotLinger(t *testing.T) {
	t.Parallel()
	// A refused client that never reads still gets its 421 and close,
	// and the accept loop goes on.
	ts := startServer(t, Options{MaxConns: 1, ReservedTrustedConns: -1, StressConns: -1}, newFileSpool(t), newTestPolicy())
	dialRaw(t, ts.addr)
	var refused []net.Conn
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		refused = append(refused, c)
	}
	for _, c := range refused {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.HasPrefix(line, "421 4.7.0") {
			t.Fatalf("refused connection got %q", line)
		}
	}
	if st := ts.srv.Stats(); st.Open != 1 {
		t.Errorf("Open = %d, want 1", st.Open)
	}
}

func mustPrefix(t *testing.T, s ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// waitLog waits until the server's log contains s.
func waitLog(t *testing.T, ts *testServer, s string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(ts.logText(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", s, ts.logText())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIdleMidLineCloses: a client that goes idle in the middle of a
// command line gets 421 4.4.2 and the close, not an answer to the
// fragment followed by more reading.
func TestIdleMidLineCloses(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{ReadTimeout: 300 * time.Millisecond, MinRateBytes: -1}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	rc.send("NOOP NOO")
	if got := readToClose(t, rc, 20*time.Second); !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("server said %q, want 421 4.4.2 and close", got)
	}
}

// TestMinRateUnderTLS: after STARTTLS the rate is kept on the encrypted
// stream and the 421 4.4.2 goes out through TLS.
func TestMinRateUnderTLS(t *testing.T) {
	t.Parallel()
	srvTLS, cliTLS := testTLS(t)
	ts := startServer(t, Options{TLSConfig: srvTLS, ReadTimeout: 5 * time.Second, MinRateBytes: 1000, MinRateInterval: time.Second},
		newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	if got := rc.cmd("STARTTLS"); code(got) != "220 2.0.0" {
		t.Fatalf("STARTTLS = %q", got)
	}
	tc := tls.Client(rc.c, cliTLS)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	trc := &rawConn{t: t, c: tc, r: bufio.NewReader(tc)}
	trc.cmd("EHLO client.example.test")
	stop := make(chan struct{})
	done := trickle(tc, "NOOP ", time.Second, stop)
	got := readToClose(t, trc, 20*time.Second)
	close(stop)
	<-done
	if !strings.HasPrefix(got, "421 4.4.2") {
		t.Errorf("server said %q over TLS, want 421 4.4.2 and close", got)
	}
}

// TestNothingAfterClose: commands a client pipelined behind the one that ended the session
// (QUIT, or the error that was one too many) are not run. They are already in the read buffer
// when the connection closes, and running them met the session Close had cleared: a MAIL
// there panicked in go-smtp (found by FuzzSession).
func TestNothingAfterClose(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, in, last string }{
		{"quit", "EHLO x\r\nQUIT\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n", "221 2.0.0"},
		{"too many errors", "EHLO x\r\nX1\r\nX2\r\nX3\r\nX4\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n", "500 5.5.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, Options{}, newFileSpool(t), newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.send(tt.in) // one write: all of it in the server's read buffer at once
			var lines []string
			for {
				line, err := rc.r.ReadString('\n')
				if err != nil {
					break
				}
				lines = append(lines, strings.TrimRight(line, "\r\n"))
			}
			if len(lines) == 0 || code(lines[len(lines)-1]) != tt.last {
				t.Errorf("replies %q: want the last %s", lines, tt.last)
			}
			for _, l := range lines {
				if strings.HasPrefix(l, "250 2.0.0 Roger") || strings.HasPrefix(l, "421") {
					t.Errorf("a command after the close was answered: %q", lines)
				}
			}
			if log := ts.logText(); strings.Contains(log, "panic") {
				t.Errorf("log:\n%s", log)
			}
		})
	}
}
