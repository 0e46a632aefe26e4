package smtpfront

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// refDataReader is go-smtp v0.25.1's DATA reader before the bulk-copy patch
// (third_party/README.md): the dot-unstuffing state machine a byte at a time. It returns
// what the reader passes on up to the end-of-data line, and how many bytes of in it took to
// the end of that line (0: it saw none).
func refDataReader(in []byte) ([]byte, int) {
	const (
		stateBeginLine = iota
		stateDot
		stateDotCR
		stateCR
		stateData
	)
	state := stateBeginLine
	var out []byte
	for i, c := range in {
		switch state {
		case stateBeginLine:
			if c == '.' {
				state = stateDot
				continue
			}
			if c == '\r' {
				state = stateCR
				break
			}
			state = stateData
		case stateDot:
			if c == '\r' {
				state = stateDotCR
				continue
			}
			state = stateData
		case stateDotCR:
			if c == '\n' {
				return out, i + 1
			}
			state = stateData
		case stateCR:
			if c == '\n' {
				state = stateBeginLine
				break
			}
			state = stateData
		case stateData:
			if c == '\r' {
				state = stateCR
			}
		}
		out = append(out, c)
	}
	return out, 0
}

// dripConn hands the server what the client wrote in reads of 1 to max bytes, so the
// server's buffer ends at every kind of place (mid-line, on a CR, on a dot).
type dripConn struct {
	net.Conn
	rnd *rand.Rand
	max int
}

func (d *dripConn) Read(p []byte) (int, error) {
	if n := 1 + d.rnd.IntN(d.max); len(p) > n {
		p = p[:n]
	}
	return d.Conn.Read(p)
}

type chanListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type dataOnly struct{ got chan []byte }

func (s *dataOnly) Mail(string, *smtp.MailOptions) error { return nil }
func (s *dataOnly) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *dataOnly) Reset()                               {}
func (s *dataOnly) Logout() error                        { return nil }
func (s *dataOnly) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.got <- b
	return nil
}

// randomBody makes DATA of short lines full of what the reader must treat specially: dots at
// line starts, lone dots, bare CR and LF, CR in mid-line, ".\r" not followed by LF.
func randomBody(rnd *rand.Rand) []byte {
	pieces := []string{"a", "bc", "defgh", strings.Repeat("x", 40), ".", "..", "\r", "\n", "\r\n", ".\r", ". \r\n", "\r\r\n"}
	var b bytes.Buffer
	for range 1 + rnd.IntN(200) {
		b.WriteString(pieces[rnd.IntN(len(pieces))])
		if rnd.IntN(4) == 0 {
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n\r\n.\r\n") // an end line even after a bare CR
	return b.Bytes()
}

// TestDataReaderPatch: the patched go-smtp DATA reader passes on exactly what the unpatched
// one did, for bodies full of dots, CRs and LFs, read through buffers that end anywhere.
func TestDataReaderPatch(t *testing.T) {
	be := &dataOnly{got: make(chan []byte, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return be, nil }))
	srv.Domain = "relay.example.test"
	srv.AllowInsecureAuth = true
	l := &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
	go srv.Serve(l)
	defer srv.Close()

	rnd := rand.New(rand.NewPCG(1, 18))
	for i := range 300 {
		body := randomBody(rnd)
		want, end := refDataReader(body)
		if end == 0 {
			t.Fatalf("body %d has no end-of-data line", i)
		}
		// The reference stops at its first end-of-data line: send only that much.
		body = body[:end]
		client, server := net.Pipe()
		l.conns <- &dripConn{Conn: server, rnd: rand.New(rand.NewPCG(uint64(i), 2)), max: 1 + i%64}
		got, err := transact(client, body, be.got)
		client.Close()
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("body %d %q:\n got %q\nwant %q", i, body, got, want)
		}
	}
}

// transact runs one transaction with body as DATA on c and returns what the session read.
func transact(c net.Conn, body []byte, got chan []byte) ([]byte, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	expect := func(code string) error {
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			if !strings.HasPrefix(l, code) {
				return fmt.Errorf("server said %q, want %s", strings.TrimSpace(l), code)
			}
			if len(l) < 4 || l[3] != '-' {
				return nil
			}
		}
	}
	if err := expect("220"); err != nil {
		return nil, err
	}
	for _, s := range [][2]string{{"EHLO client.example.test", "250"}, {"MAIL FROM:<a@example.test>", "250"},
		{"RCPT TO:<b@example.test>", "250"}, {"DATA", "354"}} {
		if _, err := io.WriteString(c, s[0]+"\r\n"); err != nil {
			return nil, err
		}
		if err := expect(s[1]); err != nil {
			return nil, err
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(body)
		errc <- err
	}()
	if err := expect("250"); err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	select {
	case b := <-got:
		return b, nil
	case <-time.After(5 * time.Second):
		return nil, errors.New("the session got no data")
	}
}

// BenchmarkDataRead is go-smtp's DATA reader on a 1 MB body of 78-byte lines over loopback
// TCP: bytes per second through the reader the front end reads every message from.
func BenchmarkDataRead(b *testing.B) {
	be := &dataOnly{got: make(chan []byte, 1)}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return be, nil }))
	srv.Domain = "relay.example.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Close()
	line := strings.Repeat("A", 76) + "\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)) + ".\r\n")
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := transact(c, body, be.got); err != nil {
			b.Fatal(err)
		}
		// A second transaction on the same connection greets again with EHLO, not 220.
		c.Close()
		if c, err = net.Dial("tcp", ln.Addr().String()); err != nil {
			b.Fatal(err)
		}
	}
}
