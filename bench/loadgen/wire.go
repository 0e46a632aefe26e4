package main

import (
	"bufio"
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
	body := []byte("Message-ID: <wire@bench>\r\n\r\n" + strings.Repeat(line, size/len(line)+1) + ".\r\n")

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

// pushTransactions runs transactions of body on one connection until stop.
func pushTransactions(addr string, body []byte, stop time.Time) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("sink said %q, want %s", strings.TrimSpace(l), code)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	cmd := func(s, code string) error {
		if _, err := c.Write([]byte(s + "\r\n")); err != nil {
			return err
		}
		return expect(code)
	}
	if err := expect("220"); err != nil {
		return err
	}
	if err := cmd("EHLO wire.bench", "250"); err != nil {
		return err
	}
	for time.Now().Before(stop) {
		for _, step := range [][2]string{{"MAIL FROM:<a@example.test>", "250"}, {"RCPT TO:<b@example.test>", "250"}, {"DATA", "354"}} {
			if err := cmd(step[0], step[1]); err != nil {
				return err
			}
		}
		if _, err := c.Write(body); err != nil {
			return err
		}
		if err := expect("250"); err != nil {
			return err
		}
	}
	return cmd("QUIT", "221")
}
