// Package smtpsink is a next-hop SMTP server for tests: a real go-smtp
// server on 127.0.0.1 that records every completed transaction and can be
// told to refuse a recipient, MAIL or DATA with a given reply, or to be down.
package smtpsink

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted transaction.
type Message struct {
	From string
	To   []string
	Data []byte
	TLS  bool // STARTTLS was used
	Helo string
}

// Sink is the test server.
type Sink struct {
	Addr string // host:port, stable across Down/Up

	tlsConfig *tls.Config
	discard   bool

	mu       sync.Mutex
	srv      *smtp.Server
	ln       net.Listener
	msgs     []Message
	rcptErr  map[string]*smtp.SMTPError
	mailErr  *smtp.SMTPError
	dataErr  *smtp.SMTPError
	rcptSeen map[string]int
	conns    map[*smtp.Conn]bool
	notify   chan struct{}
}

// Options for Start.
type Options struct {
	STARTTLS bool // offer STARTTLS with a fresh self-signed certificate
	Discard  bool // record envelopes only, not bodies (benchmarks)
}

// Start listens on 127.0.0.1:0 and serves until Close.
func Start(opts Options) (*Sink, error) {
	s := &Sink{
		rcptErr:  make(map[string]*smtp.SMTPError),
		rcptSeen: make(map[string]int),
		conns:    make(map[*smtp.Conn]bool),
		notify:   make(chan struct{}),
		discard:  opts.Discard,
	}
	if opts.STARTTLS {
		cfg, err := selfSigned()
		if err != nil {
			return nil, err
		}
		s.tlsConfig = cfg
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen: %w", err)
	}
	s.Addr = l.Addr().String()
	s.serve(l)
	return s, nil
}

func (s *Sink) serve(l net.Listener) {
	srv := smtp.NewServer(s)
	srv.Domain = "sink.test"
	srv.TLSConfig = s.tlsConfig
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	// Clients killed mid-session are what the crash tests do on purpose.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.mu.Lock()
	s.srv, s.ln = srv, l
	s.mu.Unlock()
	go srv.Serve(l)
}

// Down closes the listener and every connection: connections are refused
// until Up.
func (s *Sink) Down() {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if ln != nil {
		// Closed here too: Serve may not have registered it with srv yet.
		ln.Close()
	}
	if srv != nil {
		srv.Close()
	}
}

// Up listens again on the same address.
func (s *Sink) Up() error {
	l, err := net.Listen("tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %q: %w", s.Addr, err)
	}
	s.serve(l)
	return nil
}

// Close stops the server.
func (s *Sink) Close() { s.Down() }

// RejectRcpt answers RCPT TO:<addr> with err from now on (nil: accept).
func (s *Sink) RejectRcpt(addr string, err *smtp.SMTPError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.rcptErr, strings.ToLower(addr))
		return
	}
	s.rcptErr[strings.ToLower(addr)] = err
}

// RejectMail answers MAIL FROM with err (nil: accept).
func (s *Sink) RejectMail(err *smtp.SMTPError) {
	s.mu.Lock()
	s.mailErr = err
	s.mu.Unlock()
}

// RejectData answers the end of DATA with err (nil: accept).
func (s *Sink) RejectData(err *smtp.SMTPError) {
	s.mu.Lock()
	s.dataErr = err
	s.mu.Unlock()
}

// RcptAttempts counts RCPT commands seen for addr, accepted or not.
func (s *Sink) RcptAttempts(addr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcptSeen[strings.ToLower(addr)]
}

// Messages returns a copy of the accepted transactions so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Wait blocks until at least n transactions were accepted or timeout passes,
// and returns them.
func (s *Sink) Wait(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		if len(s.msgs) >= n {
			out := append([]Message(nil), s.msgs...)
			s.mu.Unlock()
			return out, nil
		}
		ch := s.notify
		got := len(s.msgs)
		s.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			return s.Messages(), fmt.Errorf("failed to wait for %d messages: got %d", n, got)
		}
	}
}

// NewSession implements smtp.Backend.
func (s *Sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	s.mu.Lock()
	// go-smtp makes a new session after STARTTLS and after a repeated
	// EHLO: count connections, not sessions.
	s.conns[c] = true
	s.mu.Unlock()
	return &session{sink: s, conn: c}, nil
}

// Connections counts the SMTP connections opened so far.
func (s *Sink) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

type session struct {
	sink *Sink
	conn *smtp.Conn
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.sink.mu.Lock()
	defer ss.sink.mu.Unlock()
	if ss.sink.mailErr != nil {
		return ss.sink.mailErr
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.sink.mu.Lock()
	defer ss.sink.mu.Unlock()
	ss.sink.rcptSeen[strings.ToLower(to)]++
	if err := ss.sink.rcptErr[strings.ToLower(to)]; err != nil {
		return err
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	var buf bytes.Buffer
	var w io.Writer = &buf
	if ss.sink.discard {
		w = io.Discard
	}
	if _, err := io.Copy(w, r); err != nil {
		return err
	}
	_, isTLS := ss.conn.TLSConnectionState()
	s := ss.sink
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dataErr != nil {
		return s.dataErr
	}
	s.msgs = append(s.msgs, Message{
		From: ss.from, To: append([]string(nil), ss.to...), Data: buf.Bytes(),
		TLS: isTLS, Helo: ss.conn.Hostname(),
	})
	close(s.notify)
	s.notify = make(chan struct{})
	return nil
}

func selfSigned() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to generate key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "sink.test"},
		DNSNames:     []string{"sink.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("failed to create certificate: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, nil
}
