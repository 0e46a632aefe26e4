// Package delivery is the outbound SMTP client of the appliance: it hands one
// sealed package to the configured next hop in one SMTP transaction.
//
// Design notes:
//   - One transaction per package. Connections are reused for the next
//     transaction while idle for less than Options.IdleTimeout; a reused
//     connection that turns out closed by the next hop before anything of the
//     transaction was accepted is replaced by a fresh one once. Any error
//     ends a connection, so no half-dead session is reused.
//   - PIPELINING (RFC 2920): when the next hop offers it, MAIL, every RCPT and DATA go out in
//     one write and their replies are read in order (go-smtp's client has no pipelining, so
//     these transactions are spoken here; go-smtp only greets and quits). A package then
//     costs two round trips (the commands, the final dot) instead of three plus one per
//     recipient. Options.NoPipelining turns it off.
//   - EHLO always carries the configured hostname, also before STARTTLS. go-smtp
//     v0.25 cannot start TLS on a client it did not greet itself with
//     "localhost", so the plaintext greeting, EHLO and STARTTLS are spoken here
//     and the (possibly TLS) connection is then handed to go-smtp for the
//     transaction.
//   - STARTTLS is used whenever the next hop offers it; RequireTLS refuses to
//     send in clear text. A TLS handshake failure is a temporary error: the
//     message stays queued rather than going out unprotected.
//   - Every error is an [*Error] that says whether it is temporary (4xx,
//     network, timeout) or permanent (5xx) and keeps the SMTP reply, so the
//     queue can retry or bounce and write a DSN with the real diagnostic.
//   - Timeouts: the connect timeout bounds dialing, the command timeout bounds
//     each command and every read or write while the body streams, the data
//     timeout bounds the wait for the reply to the final dot. Cancelling the
//     context closes the connection at once.
//   - The body is streamed from the spool file to the connection; it is never
//     held in memory as a whole. To a next hop without TLS, the part of a package
//     that the spool found in DATA form already (queue.WireBody: the encrypted
//     content's base64, shared by the packages of a message) goes from the spool
//     file to the socket by sendfile; only the package's own head is dot-stuffed.
package delivery

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/queue"
)

// Defaults for the zero values of [Options].
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 5 * time.Minute
	DefaultDataTimeout    = 10 * time.Minute
)

// Options configure a [Client].
type Options struct {
	NextHop  string // host:port of the smarthost
	Hostname string // name sent in EHLO

	// TLSConfig is used for STARTTLS; nil means a default config with
	// ServerName taken from NextHop.
	TLSConfig *tls.Config
	// InsecureSkipVerify accepts any server certificate (tests with
	// self-signed certificates only).
	InsecureSkipVerify bool
	// RequireTLS makes a next hop without STARTTLS a temporary failure.
	RequireTLS bool

	ConnectTimeout time.Duration
	CommandTimeout time.Duration
	DataTimeout    time.Duration

	// MaxIdle connections are kept open between transactions (0: 4;
	// negative: none), each for at most IdleTimeout (0: 10s). Packages of
	// one message go to the same next hop back to back, so this saves a TCP
	// and TLS handshake per package.
	MaxIdle     int
	IdleTimeout time.Duration

	// NoPipelining speaks every command of a transaction and waits for its reply before the
	// next, even to a next hop that offers PIPELINING (which saves a round trip per recipient
	// and one for DATA on every package).
	NoPipelining bool
}

// Client delivers packages to one next hop. It is safe for concurrent use:
// each Deliver call uses its own connection.
type Client struct {
	opts Options
	tls  *tls.Config

	mu     sync.Mutex
	idle   []*session // most recently used last
	closed bool
}

var _ queue.Deliverer = (*Client)(nil)

// ErrInvalidOptions is returned by [New] for unusable options.
var ErrInvalidOptions = errors.New("invalid delivery options")

// New checks opts and returns a client.
func New(opts Options) (*Client, error) {
	host, _, err := net.SplitHostPort(opts.NextHop)
	if err != nil {
		return nil, fmt.Errorf("%w: next hop %q: %w", ErrInvalidOptions, opts.NextHop, err)
	}
	if opts.Hostname == "" || strings.ContainsAny(opts.Hostname, " \r\n") {
		return nil, fmt.Errorf("%w: hostname %q", ErrInvalidOptions, opts.Hostname)
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.CommandTimeout <= 0 {
		opts.CommandTimeout = DefaultCommandTimeout
	}
	if opts.DataTimeout <= 0 {
		opts.DataTimeout = DefaultDataTimeout
	}
	if opts.MaxIdle == 0 {
		opts.MaxIdle = 4
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 10 * time.Second
	}
	cfg := &tls.Config{}
	if opts.TLSConfig != nil {
		cfg = opts.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	if opts.InsecureSkipVerify {
		cfg.InsecureSkipVerify = true
	}
	return &Client{opts: opts, tls: cfg}, nil
}

// Error is a failed delivery step. Code, Enhanced and Message hold the SMTP
// reply when there was one (Code 0 otherwise: network, timeout, TLS).
type Error struct {
	Op       string // "connect", "ehlo", "starttls", "mail", "rcpt", "data"
	Code     int
	Enhanced smtp.EnhancedCode
	Message  string
	Temp     bool // a later attempt may succeed
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "failed to %s", e.Op)
	if e.Code != 0 {
		fmt.Fprintf(&b, ": %d", e.Code)
		if e.Enhanced != (smtp.EnhancedCode{}) && e.Enhanced != smtp.NoEnhancedCode {
			fmt.Fprintf(&b, " %d.%d.%d", e.Enhanced[0], e.Enhanced[1], e.Enhanced[2])
		}
		if e.Message != "" {
			b.WriteString(" " + e.Message)
		}
	} else if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Temporary reports whether a later attempt may succeed.
func (e *Error) Temporary() bool { return e.Temp }

func (e *Error) Unwrap() error { return e.Err }

// classify turns any error of a delivery step into an *Error.
func classify(op string, err error) *Error {
	var de *Error
	if errors.As(err, &de) {
		return de
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return &Error{
			Op: op, Code: se.Code, Enhanced: se.EnhancedCode, Message: se.Message,
			// Anything that is not a clear 5xx is retried: a garbled reply is
			// more likely a broken connection than a verdict.
			Temp: se.Code/100 != 5,
			Err:  se,
		}
	}
	var pe *textproto.Error
	if errors.As(err, &pe) {
		e := &Error{Op: op, Code: pe.Code, Message: pe.Msg, Temp: pe.Code/100 != 5, Err: err}
		if code, rest, ok := strings.Cut(pe.Msg, " "); ok {
			var enh smtp.EnhancedCode
			if n, _ := fmt.Sscanf(code, "%d.%d.%d", &enh[0], &enh[1], &enh[2]); n == 3 {
				e.Enhanced, e.Message = enh, rest
			}
		}
		return e
	}
	// Network errors, timeouts, TLS failures, context cancellation.
	return &Error{Op: op, Temp: true, Err: err}
}

// Deliver sends body to rcptTo in one transaction. A non-nil error (an
// [*Error]) is about the whole transaction: connection, greeting, TLS, MAIL
// or DATA, and nothing was delivered. Otherwise there is one result per
// recipient, in order, and the body was accepted for those whose Err (an
// [*Error] wrapping the RCPT reply) is nil; when every RCPT was refused no
// DATA is sent.
func (c *Client) Deliver(ctx context.Context, mailFrom string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	if len(rcptTo) == 0 {
		return nil, &Error{Op: "rcpt", Err: errors.New("no recipients")}
	}
	for attempt := 0; ; attempt++ {
		var s *session
		if attempt == 0 {
			// The retry below dials: the other idle connections are as old as
			// the one the next hop just closed, and likely closed too.
			s = c.get()
		}
		reused := s != nil
		if !reused {
			var err error
			if s, err = c.dial(ctx); err != nil {
				return nil, err
			}
		}
		stop := context.AfterFunc(ctx, func() { s.raw.Close() })
		res, err := c.transaction(s, mailFrom, rcptTo, body)
		live := stop()
		if err == nil {
			if live && !s.spent {
				c.put(s)
			} else {
				s.sc.Close()
			}
			return res, nil
		}
		s.sc.Close()
		var de *Error
		if reused && attempt == 0 && ctx.Err() == nil && errors.As(err, &de) && de.Op == "mail" && (de.Code == 0 || de.Code == 421) {
			// The next hop closed the idle connection; nothing of this
			// transaction was sent, so a fresh connection is safe.
			continue
		}
		return nil, ctxErr(ctx, err)
	}
}

// session is an open, greeted connection between transactions.
type session struct {
	sc        *smtp.Client
	conn      *idleConn
	raw       net.Conn
	wire      net.Conn // what go-smtp speaks on: conn, or TLS over it; DATA bytes go here
	idleSince time.Time
	// pipelining: the next hop offers PIPELINING (RFC 2920), and transactions are spoken here
	// instead of by go-smtp, MAIL, RCPT and DATA in one write; r reads their replies. go-smtp
	// then only greets and quits, and no reader holds bytes between transactions (a reply is
	// read whole, and the next hop sends nothing unasked).
	pipelining bool
	bodyParam  string // " BODY=8BITMIME" when the next hop offers 8BITMIME, as go-smtp sends
	r          *textproto.Reader
	// spent: the session may not carry another transaction.
	spent bool
}

// dial connects, greets and starts TLS.
func (c *Client) dial(ctx context.Context) (*session, error) {
	d := net.Dialer{Timeout: c.opts.ConnectTimeout}
	raw, err := d.DialContext(ctx, "tcp", c.opts.NextHop)
	if err != nil {
		return nil, classify("connect", err)
	}
	conn := &idleConn{Conn: raw}
	conn.timeout.Store(int64(c.opts.CommandTimeout))
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	sc, wire, err := c.open(conn)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		raw.Close()
		return nil, ctxErr(ctx, err)
	}
	se := &session{sc: sc, conn: conn, raw: raw, wire: wire}
	if ok, _ := sc.Extension("PIPELINING"); ok && !c.opts.NoPipelining {
		se.pipelining = true
		se.r = textproto.NewReader(bufio.NewReaderSize(wire, 4<<10))
		if ok, _ := sc.Extension("8BITMIME"); ok {
			se.bodyParam = " BODY=8BITMIME"
		}
	}
	return se, nil
}

// get returns an idle session that is not too old, or nil.
func (c *Client) get() *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.idle) > 0 {
		s := c.idle[len(c.idle)-1]
		c.idle = c.idle[:len(c.idle)-1]
		if time.Since(s.idleSince) < c.opts.IdleTimeout {
			return s
		}
		go s.sc.Quit()
	}
	return nil
}

// put keeps a session for the next transaction, or ends it.
func (c *Client) put(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle) >= c.opts.MaxIdle {
		go s.sc.Quit()
		return
	}
	s.idleSince = time.Now()
	c.idle = append(c.idle, s)
}

// Close ends the idle connections; later deliveries open new ones but keep
// none.
func (c *Client) Close() error {
	c.mu.Lock()
	idle := c.idle
	c.idle, c.closed = nil, true
	c.mu.Unlock()
	for _, s := range idle {
		s.sc.Quit()
	}
	return nil
}

// ctxErr keeps the cause visible when the connection was closed because the
// context ended.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	var de *Error
	if errors.As(err, &de) {
		return &Error{Op: de.Op, Temp: true, Err: errors.Join(ctx.Err(), err)}
	}
	return &Error{Op: "deliver", Temp: true, Err: ctx.Err()}
}

// open speaks greeting, EHLO and STARTTLS itself and returns a go-smtp client
// greeted with the configured hostname on the final connection, and that
// connection.
func (c *Client) open(conn *idleConn) (*smtp.Client, net.Conn, error) {
	tp := textproto.NewConn(nopCloser{conn})
	if _, _, err := tp.ReadResponse(220); err != nil {
		return nil, nil, classify("connect", err)
	}
	id, err := tp.Cmd("EHLO %s", c.opts.Hostname)
	if err != nil {
		return nil, nil, classify("ehlo", err)
	}
	tp.StartResponse(id)
	_, msg, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	var pe *textproto.Error
	if errors.As(err, &pe) && (pe.Code == 500 || pe.Code == 502) {
		// An old server without ESMTP: no extensions, so no TLS; go-smtp
		// falls back to HELO when its own EHLO is refused again.
		if c.opts.RequireTLS {
			return nil, nil, &Error{Op: "starttls", Temp: true, Err: errors.New("next hop does not offer STARTTLS")}
		}
		sc, err := c.resume(conn)
		return sc, conn, err
	}
	if err != nil {
		return nil, nil, classify("ehlo", err)
	}
	var next net.Conn = conn
	if hasExtension(msg, "STARTTLS") {
		id, err := tp.Cmd("STARTTLS")
		if err != nil {
			return nil, nil, classify("starttls", err)
		}
		tp.StartResponse(id)
		_, _, err = tp.ReadResponse(220)
		tp.EndResponse(id)
		if err != nil {
			return nil, nil, classify("starttls", err)
		}
		if tp.R.Buffered() > 0 {
			// Bytes after the 220 before our handshake would be injected into
			// the TLS session (CVE-2011-0411 style): refuse.
			return nil, nil, &Error{Op: "starttls", Temp: true, Err: errors.New("unexpected data after STARTTLS reply")}
		}
		tc := tls.Client(conn, c.tls)
		if err := tc.Handshake(); err != nil {
			return nil, nil, &Error{Op: "starttls", Temp: true, Err: err}
		}
		next = tc
	} else if c.opts.RequireTLS {
		return nil, nil, &Error{Op: "starttls", Temp: true, Err: errors.New("next hop does not offer STARTTLS")}
	}
	sc, err := c.resume(next)
	return sc, next, err
}

// resume hands the connection to go-smtp. It insists on reading a greeting
// first; the real one was consumed already, so it gets a synthetic one and
// then sends EHLO again (after STARTTLS that is required anyway).
func (c *Client) resume(conn net.Conn) (*smtp.Client, error) {
	sc := smtp.NewClient(&greetedConn{Conn: conn, greeting: strings.NewReader("220 resumed\r\n")})
	sc.CommandTimeout = c.opts.CommandTimeout
	sc.SubmissionTimeout = c.opts.DataTimeout
	if err := sc.Hello(c.opts.Hostname); err != nil {
		sc.Close()
		return nil, classify("ehlo", err)
	}
	return sc, nil
}

func (c *Client) transaction(s *session, mailFrom string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	sc, conn := s.sc, s.conn
	if !validPath(mailFrom) {
		return nil, &Error{Op: "mail", Err: fmt.Errorf("%w: %q", ErrBadAddress, mailFrom)}
	}
	if s.pipelining {
		return c.pipelined(s, mailFrom, rcptTo, body)
	}
	if err := sc.Mail(mailFrom, nil); err != nil {
		return nil, classify("mail", err)
	}
	res := make([]queue.RcptResult, len(rcptTo))
	accepted := 0
	for i, r := range rcptTo {
		res[i].Rcpt = r
		if r == "" || !validPath(r) {
			res[i].Err = &Error{Op: "rcpt", Err: fmt.Errorf("%w: %q", ErrBadAddress, r)}
			continue
		}
		if err := sc.Rcpt(r, nil); err != nil {
			e := classify("rcpt", err)
			if e.Code == 0 {
				// The connection broke: nothing more can be said per recipient.
				return nil, e
			}
			res[i].Err = e
			continue
		}
		accepted++
	}
	if accepted == 0 {
		// Per-recipient answers are still the most precise verdict; the
		// transaction itself did not fail.
		_ = sc.Reset()
		return res, nil
	}
	w, err := sc.Data()
	if err != nil {
		return nil, classify("data", err)
	}
	// go-smtp's dot writer handles bytes one at a time (it was the largest
	// CPU cost of delivering 1 MB packages, see bench/HISTORY.md), so the
	// body is written here (writeBody), straight onto the connection go-smtp
	// speaks on; go-smtp has flushed the DATA command and writes nothing until
	// the end of data. Only the last line end goes through its writer, which
	// then ends the data as it would have anyway.
	held, err := c.writeBody(s, body)
	if err != nil {
		return nil, classify("data", err)
	}
	if _, err := w.Write(held); err != nil {
		return nil, classify("data", err)
	}
	conn.timeout.Store(int64(c.opts.DataTimeout))
	_, err = w.CloseWithResponse()
	conn.timeout.Store(int64(c.opts.CommandTimeout))
	if err != nil {
		return nil, classify("data", err)
	}
	return res, nil
}

// pipelined is transaction over PIPELINING (RFC 2920): MAIL, the RCPTs and DATA go out in one
// write, and their replies are read in order; the same results and errors as one at a time.
func (c *Client) pipelined(s *session, mailFrom string, rcptTo []string, body io.Reader) ([]queue.RcptResult, error) {
	res := make([]queue.RcptResult, len(rcptTo))
	var cmds strings.Builder
	fmt.Fprintf(&cmds, "MAIL FROM:<%s>%s\r\n", mailFrom, s.bodyParam)
	sent := make([]bool, len(rcptTo))
	for i, r := range rcptTo {
		res[i].Rcpt = r
		if r == "" || !validPath(r) {
			res[i].Err = &Error{Op: "rcpt", Err: fmt.Errorf("%w: %q", ErrBadAddress, r)}
			continue
		}
		fmt.Fprintf(&cmds, "RCPT TO:<%s>\r\n", r)
		sent[i] = true
	}
	if !slices.Contains(sent, true) {
		// Nothing to send to: as go-smtp would, MAIL alone, then RSET.
		s.spent = true
		if _, err := io.WriteString(s.wire, cmds.String()); err != nil {
			return nil, classify("mail", err)
		}
		if err := reply(s.r, 250); err != nil {
			return nil, classify("mail", err)
		}
		return res, nil
	}
	cmds.WriteString("DATA\r\n")
	if _, err := io.WriteString(s.wire, cmds.String()); err != nil {
		return nil, classify("mail", err)
	}
	if err := reply(s.r, 250); err != nil {
		return nil, classify("mail", err)
	}
	accepted := 0
	for i := range rcptTo {
		if !sent[i] {
			continue
		}
		if err := reply(s.r, 25); err != nil {
			e := classify("rcpt", err)
			if e.Code == 0 {
				return nil, e
			}
			res[i].Err = e
			continue
		}
		accepted++
	}
	err := reply(s.r, 354)
	if accepted == 0 {
		// Every recipient refused: the next hop refuses DATA too (RFC 2920 section 3.1), or
		// waits for data; either way the per-recipient answers are the verdict, and the
		// connection, in a state not worth a guess, is not used again.
		s.spent = true
		return res, nil
	}
	if err != nil {
		return nil, classify("data", err)
	}
	held, err := c.writeBody(s, body)
	if err != nil {
		return nil, classify("data", err)
	}
	if _, err := s.wire.Write(dataEnd(held)); err != nil {
		return nil, classify("data", err)
	}
	s.conn.timeout.Store(int64(c.opts.DataTimeout))
	err = reply(s.r, 250)
	s.conn.timeout.Store(int64(c.opts.CommandTimeout))
	if err != nil {
		return nil, classify("data", err)
	}
	return res, nil
}

// reply reads one reply as go-smtp's client does: another code than expect (as
// textproto.Reader.ReadResponse takes it) is an *smtp.SMTPError with the enhanced status code
// split off the text, so a failure looks the same pipelined or not.
func reply(r *textproto.Reader, expect int) error {
	_, _, err := r.ReadResponse(expect)
	var pe *textproto.Error
	if !errors.As(err, &pe) {
		return err
	}
	se := &smtp.SMTPError{Code: pe.Code, Message: pe.Msg}
	code, msg, ok := strings.Cut(pe.Msg, " ")
	if !ok {
		return se
	}
	var enh smtp.EnhancedCode
	parts := strings.Split(code, ".")
	if len(parts) != 3 {
		return se
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return se
		}
		enh[i] = n
	}
	// RFC 2034: the code starts every line of the text.
	se.EnhancedCode, se.Message = enh, strings.ReplaceAll(msg, "\n"+code+" ", "\n")
	return se
}

// ErrBadAddress is wrapped by the permanent error for an address that
// cannot be put into a MAIL or RCPT command.
var ErrBadAddress = errors.New("bad address")

// validPath rejects what would break the command line or the angle
// brackets; the address syntax itself is the next hop's to judge.
func validPath(addr string) bool {
	if len(addr) > 512 {
		return false
	}
	for _, r := range addr {
		if r < 0x20 || r == 0x7f || r == '<' || r == '>' || r == ' ' {
			return false
		}
	}
	return true
}

// hasExtension reports whether an EHLO reply (lines after the first) lists ext.
func hasExtension(msg, ext string) bool {
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		kw, _, _ := strings.Cut(strings.TrimSpace(l), " ")
		if strings.EqualFold(kw, ext) {
			return true
		}
	}
	return false
}

// idleConn renews the deadline before every read and write, so a stalled peer
// is detected while the body streams, where go-smtp sets no deadline.
type idleConn struct {
	net.Conn
	timeout atomic.Int64
}

func (c *idleConn) Read(p []byte) (int, error) {
	c.Conn.SetReadDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(time.Duration(c.timeout.Load())))
	return c.Conn.Write(p)
}

// go-smtp clears deadlines after each command; the idle deadline above is
// the one that must hold, so those calls are ignored.
func (c *idleConn) SetDeadline(time.Time) error      { return nil }
func (c *idleConn) SetReadDeadline(time.Time) error  { return nil }
func (c *idleConn) SetWriteDeadline(time.Time) error { return nil }

// greetedConn replays a greeting before the connection's own bytes.
type greetedConn struct {
	net.Conn
	greeting *strings.Reader
}

func (c *greetedConn) Read(p []byte) (int, error) {
	if c.greeting.Len() > 0 {
		return c.greeting.Read(p)
	}
	return c.Conn.Read(p)
}

// nopCloser keeps the textproto.Conn used for the plaintext phase from
// closing the connection go-smtp continues on.
type nopCloser struct{ net.Conn }

func (nopCloser) Close() error { return nil }
