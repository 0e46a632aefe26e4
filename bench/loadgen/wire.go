package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The wire floor: how fast this machine moves package bytes through one loopback SMTP hop into
// the benchmark's own sink, with nothing in between. Every package the appliance makes has to
// cross that hop once (and the spool's disk once more), so for shapes with many large packages
// this floor, not the HSM's, bounds any relay on the machine. It is measured, like the HSM
// floor, in the same run on the same machine.

// packageBytes estimates one package of the shape as the appliance sends it: the signed entity
// (body plus signedOverhead) inside a CMS envelope (a few hundred bytes per RecipientInfo),
// base64 in 76-column lines, under a header of about 1 KB.
// A client-encrypted package is the client's CMS (nothing signed) with fewer RecipientInfos.
func (s shape) packageBytes() int {
	der := s.Size + signedOverhead + 600
	if s.ClientEncrypted {
		der = s.Size + 600
	}
	return (der+56)/57*78 + 1024
}

// measureWire sends transactions of size bytes over parallel connections to a fresh sink for
// each and returns the payload bytes per second the sink took in, and this process's CPU time
// (sender and sink) per payload byte.
func measureWire(parallel, size int, each time.Duration) (bps, cpuPerByte float64, err error) {
	var taken atomic.Int64
	sk, err := startSink("127.0.0.1:0", func(tx sinkTx) { taken.Add(tx.Bytes) })
	if err != nil {
		return 0, 0, err
	}
	defer sk.Close()
	line := strings.Repeat("A", 76) + "\r\n"
	body := []byte("Message-ID: <wire@bench>\r\n\r\n" + strings.Repeat(line, size/len(line)+1))

	var (
		wg       sync.WaitGroup
		firstErr atomic.Value
	)
	cpu0 := ownCPU()
	start := time.Now()
	stop := start.Add(each)
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pushTransactions(sk.Addr(), body, stop); err != nil {
				firstErr.CompareAndSwap(nil, err)
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, 0, fmt.Errorf("failed to time the wire: %w", err)
	}
	n := float64(max(taken.Load(), 1))
	return n / time.Since(start).Seconds(), (ownCPU() - cpu0).Seconds() / n, nil
}

// pushTransactions runs transactions of body (dot-stuffed, without the final dot) on one
// connection until stop.
func pushTransactions(addr string, body []byte, stop time.Time) error {
	c, err := dialRaw(addr)
	if err != nil {
		return err
	}
	defer c.close()
	rcpts := []string{"b@example.test"}
	for time.Now().Before(stop) {
		if err := c.transaction("a@example.test", rcpts, body); err != nil {
			return err
		}
	}
	return c.quit()
}

// rawSMTP is the client side of the benchmark: the wire floor's sender and the load
// generator's submissions. It speaks SMTP as go-smtp's client does (one command, then its
// reply; no pipelining) but writes a message's bytes, dot-stuffed once beforehand, in one
// writev instead of through a dot writer that handles them a byte at a time: the generator
// shares the machine with the relay under test and must cost it as little CPU as the floor's
// sender does.
type rawSMTP struct {
	c net.Conn
	r *bufio.Reader
}

// dialRaw connects and greets.
func dialRaw(addr string) (*rawSMTP, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &rawSMTP{c: c, r: bufio.NewReader(c)}
	if err := s.expect("220"); err != nil {
		c.Close()
		return nil, err
	}
	if err := s.cmd("EHLO loadgen.bench", "250"); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

func (s *rawSMTP) close() error { return s.c.Close() }

func (s *rawSMTP) quit() error { return s.cmd("QUIT", "221") }

// replyError is a reply other than the one a command expects.
type replyError struct{ line, want string }

func (e *replyError) Error() string { return fmt.Sprintf("server said %q, want %s", e.line, e.want) }

// transient reports whether err is a 4xx reply: the server (a relay shedding load, 451 4.3.2)
// asks to be tried again later, and the connection stays usable after RSET.
func transient(err error) bool {
	var re *replyError
	return errors.As(err, &re) && strings.HasPrefix(re.line, "4") && !strings.HasPrefix(re.line, "421")
}

// expect reads one reply, all its lines, and fails unless its code is code.
func (s *rawSMTP) expect(code string) error {
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, code) {
			return &replyError{line: strings.TrimSpace(l), want: code}
		}
		if len(l) < 4 || l[3] != '-' {
			return nil
		}
	}
}

func (s *rawSMTP) cmd(line, code string) error {
	if _, err := s.c.Write([]byte(line + "\r\n")); err != nil {
		return err
	}
	return s.expect(code)
}

// transaction sends one message: parts are its bytes, dot-stuffed and ending in CRLF.
func (s *rawSMTP) transaction(from string, rcpts []string, parts ...[]byte) error {
	if err := s.cmd("MAIL FROM:<"+from+">", "250"); err != nil {
		return fmt.Errorf("failed to send MAIL: %w", err)
	}
	for _, r := range rcpts {
		if err := s.cmd("RCPT TO:<"+r+">", "250"); err != nil {
			return fmt.Errorf("failed to send RCPT %q: %w", r, err)
		}
	}
	if err := s.cmd("DATA", "354"); err != nil {
		return fmt.Errorf("failed to send DATA: %w", err)
	}
	bufs := make(net.Buffers, 0, len(parts)+1)
	bufs = append(bufs, parts...)
	bufs = append(bufs, []byte(".\r\n"))
	if _, err := bufs.WriteTo(s.c); err != nil {
		return fmt.Errorf("failed to send message: %w", err)
	}
	if err := s.expect("250"); err != nil {
		return fmt.Errorf("failed to end DATA: %w", err)
	}
	return nil
}

// dotStuff returns b with a dot added before every line that starts with one, ending in CRLF,
// as it goes between DATA and the final dot.
func dotStuff(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/64+2)
	start := true
	for _, c := range b {
		if start && c == '.' {
			out = append(out, '.')
		}
		out = append(out, c)
		start = c == '\n'
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}
