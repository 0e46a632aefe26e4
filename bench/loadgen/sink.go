package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// sink is the next hop of both relays under test. It speaks just enough ESMTP (PIPELINING,
// 8BITMIME, SIZE) for Postfix's smtp client and the appliance's delivery client, reads DATA
// with a bufio.Reader a line at a time instead of go-smtp's byte-at-a-time dot reader (21 MB
// of packages per 1 MB message would otherwise cost the sink more CPU than the relay under test
// spends), keeps only the Message-ID, and reports each transaction to onTx.
type sink struct {
	l    net.Listener
	onTx func(tx sinkTx)
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]bool
	// accepted counts connections: with transactions per connection it says whether a relay
	// reuses its connections to the next hop.
	accepted atomic.Int64
	// shed, when set (tests), answers a MAIL 451 4.3.2 while it returns true.
	shed func() bool
}

// sinkTx is one accepted transaction.
type sinkTx struct {
	MessageID string
	Rcpts     int
	Bytes     int64
	At        time.Time
}

func startSink(addr string, onTx func(sinkTx)) (*sink, error) { return newSink(addr, onTx, nil) }

func newSink(addr string, onTx func(sinkTx), shed func() bool) (*sink, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %q: %w", addr, err)
	}
	s := &sink{l: l, onTx: onTx, conns: map[net.Conn]bool{}, shed: shed}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *sink) Addr() string { return s.l.Addr().String() }

func (s *sink) Close() error {
	err := s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *sink) accept() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.accepted.Add(1)
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			serveSMTPShed(c, c, s.onTx, s.shed)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// serveSMTP runs one SMTP session on r/w until QUIT or an error. Replies are flushed only when
// no further pipelined command is already buffered, as RFC 2920 allows.
func serveSMTP(r io.Reader, w io.Writer, onTx func(sinkTx)) error {
	return serveSMTPShed(r, w, onTx, nil)
}

// serveSMTPShed is serveSMTP answering a MAIL 451 4.3.2 while shed (if not nil) returns true,
// as a relay shedding load does.
func serveSMTPShed(r io.Reader, w io.Writer, onTx func(sinkTx), shed func() bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	bw := bufio.NewWriterSize(w, 4<<10)
	reply := func(s string) error {
		bw.WriteString(s + "\r\n")
		if br.Buffered() == 0 {
			return bw.Flush()
		}
		return nil
	}
	if err := reply("220 sink.bench ESMTP"); err != nil {
		return err
	}
	var mail bool
	var rcpts int
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		cmd := bytes.ToUpper(bytes.TrimRight(line, "\r\n"))
		verb, _, _ := bytes.Cut(cmd, []byte(" "))
		switch string(verb) {
		case "EHLO":
			err = reply("250-sink.bench\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600")
		case "HELO":
			err = reply("250 sink.bench")
		case "MAIL":
			if shed != nil && shed() {
				mail, rcpts = false, 0
				err = reply("451 4.3.2 shedding load")
				break
			}
			mail, rcpts = true, 0
			err = reply("250 2.1.0 ok")
		case "RCPT":
			if !mail {
				err = reply("503 5.5.1 need MAIL")
				break
			}
			rcpts++
			err = reply("250 2.1.5 ok")
		case "DATA":
			if !mail || rcpts == 0 {
				err = reply("503 5.5.1 need RCPT")
				break
			}
			if err = reply("354 go ahead"); err != nil {
				return err
			}
			bw.Flush()
			id, n, derr := readData(br)
			if derr != nil {
				return derr
			}
			onTx(sinkTx{MessageID: id, Rcpts: rcpts, Bytes: n, At: time.Now()})
			mail, rcpts = false, 0
			err = reply("250 2.0.0 ok")
		case "RSET":
			mail, rcpts = false, 0
			err = reply("250 2.0.0 ok")
		case "NOOP":
			err = reply("250 2.0.0 ok")
		case "QUIT":
			reply("221 2.0.0 bye")
			return bw.Flush()
		default:
			err = reply("502 5.5.2 not implemented")
		}
		if err != nil {
			return err
		}
	}
}

// errDataTruncated reports a connection that ended inside DATA.
var errDataTruncated = errors.New("data ended before the final dot")

// readData consumes a dot-terminated DATA section and returns the Message-ID of its header
// (angle brackets kept, "" when absent) and the number of bytes read. Header continuation
// lines are not joined: both relays keep Message-ID on one line.
func readData(br *bufio.Reader) (string, int64, error) {
	var (
		id       string
		n        int64
		inHeader = true
		partial  bool // the previous ReadSlice stopped mid-line
	)
	for {
		line, err := br.ReadSlice('\n')
		n += int64(len(line))
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = errDataTruncated
			}
			return "", n, err
		}
		full := err == nil
		if !partial {
			if bytes.Equal(line, []byte(".\r\n")) || bytes.Equal(line, []byte(".\n")) {
				return id, n, nil
			}
			if inHeader && full { // a header line longer than the buffer is skipped, not cut
				l := bytes.TrimRight(line, "\r\n")
				if len(l) == 0 {
					inHeader = false
				} else if name, v, ok := bytes.Cut(l, []byte(":")); ok && id == "" && bytes.EqualFold(name, []byte("Message-ID")) {
					// A bare CR inside the field (not a line end for ReadSlice) is no id.
					if v = bytes.TrimSpace(v); !bytes.ContainsAny(v, "\r\n") {
						id = string(v)
					}
				}
			}
		}
		partial = !full
	}
}
