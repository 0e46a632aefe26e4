// Package sink is a capturing SMTP server that stands in for the appliance's next hop in tests and
// in the demo.
//
// It records every completed transaction (MAIL FROM, the RCPT TO list, the DATA bytes and the time)
// in memory and, when given a directory, as DIR/NNN.eml plus DIR/NNN.json. The .json file is renamed
// into place after the .eml, so a reader that sees NNN.json can trust NNN.eml to be whole; numbering
// continues after the highest NNN already in the directory, so a restarted sink never overwrites.
//
// Faults make it a bad next hop on purpose: a reply at MAIL, at a given RCPT or at the end of DATA,
// for a number of transactions or until cleared. A 421 reply also closes the connection, as a real
// server shutting down would. Down and Up stop and restart listening on the same address, so a
// daemon configured with that address sees connection refusals and then recovery.
//
// The sink accepts any sender and recipient and does no relaying, authentication or TLS.
package sink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// ErrClosed is returned by Up and Wait once the sink has been closed.
var ErrClosed = errors.New("sink closed")

// Transaction is one message the sink accepted.
type Transaction struct {
	Seq      int       `json:"seq"`       // 1, 2, ... in order of acceptance
	MailFrom string    `json:"mail_from"` // "" for the null reverse-path <> (DSNs)
	RcptTo   []string  `json:"rcpt_to"`   // the accepted recipients, in RCPT order
	Helo     string    `json:"helo"`
	Time     time.Time `json:"time"`
	Size     int       `json:"size"`
	File     string    `json:"file,omitempty"` // NNN.eml when the sink has a directory
	Data     []byte    `json:"-"`              // the message exactly as received, CRLF line ends
}

// Stage is where in a transaction a fault fires.
type Stage int

// Stages of an SMTP transaction.
const (
	AtMail Stage = iota + 1
	AtRcpt
	AtData // after the whole message was read, instead of 250
)

// Fault makes the sink answer Reply instead of accepting.
type Fault struct {
	Stage Stage
	// Rcpt limits an AtRcpt fault to one recipient (case-insensitive); empty means every recipient.
	Rcpt  string
	Reply *smtp.SMTPError
	// Times is how often the fault fires before it disarms itself; 0 means until ClearFaults.
	Times int
}

// Options configure Start.
type Options struct {
	// Addr to listen on; "" means 127.0.0.1:0 (a free port, see Addr).
	Addr string
	// Dir, when not empty, receives NNN.eml and NNN.json per transaction; it is created if needed.
	Dir string
	// Domain is the name in the greeting; "" means "sink.test".
	Domain string
	// MaxMessageBytes is advertised with SIZE and enforced (552 5.3.4); 0 means no limit.
	MaxMessageBytes int64
	// Notify, when set, is called after each transaction is recorded, outside the sink's lock.
	Notify func(Transaction)
}

// Sink is a running capturing SMTP server. Its methods are safe for concurrent use.
type Sink struct {
	opts Options
	addr string

	mu      sync.Mutex
	txs     []Transaction
	next    int // sequence number of the next transaction
	changed chan struct{}
	faults  []*Fault
	refused int
	srv     *smtp.Server
	ln      net.Listener
	closed  bool
}

// Start listens and serves until Close.
func Start(opts Options) (*Sink, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Domain == "" {
		opts.Domain = "sink.test"
	}
	s := &Sink{opts: opts, next: 1, changed: make(chan struct{})}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("failed to create sink directory %q: %w", opts.Dir, err)
		}
		last, err := lastSeq(opts.Dir)
		if err != nil {
			return nil, err
		}
		s.next = last + 1
	}
	l, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %q: %w", opts.Addr, err)
	}
	s.addr = l.Addr().String()
	s.serve(l)
	return s, nil
}

var seqFile = regexp.MustCompile(`^([0-9]+)\.json$`)

func lastSeq(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("failed to read sink directory %q: %w", dir, err)
	}
	last := 0
	for _, e := range entries {
		if m := seqFile.FindStringSubmatch(e.Name()); m != nil {
			if n, err := strconv.Atoi(m[1]); err == nil && n > last {
				last = n
			}
		}
	}
	return last, nil
}

// serve runs a fresh go-smtp server on l: a closed smtp.Server cannot be restarted, so Up makes a
// new one.
func (s *Sink) serve(l net.Listener) {
	srv := smtp.NewServer(backend{s})
	srv.Domain = s.opts.Domain
	srv.MaxMessageBytes = s.opts.MaxMessageBytes
	srv.MaxRecipients = 0
	srv.EnableSMTPUTF8 = true
	srv.ReadTimeout = 5 * time.Minute
	srv.WriteTimeout = 5 * time.Minute
	// The sink is a library: connection errors (clients hanging up, faults closing) are expected.
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.mu.Lock()
	s.srv, s.ln = srv, l
	s.mu.Unlock()
	go srv.Serve(l)
}

// Addr is the host:port the sink listens on, also while it is down.
func (s *Sink) Addr() string { return s.addr }

// Dir is the directory transactions are written to, or "".
func (s *Sink) Dir() string { return s.opts.Dir }

// Down stops listening and drops open connections; clients get connection refused until Up.
func (s *Sink) Down() error {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	// Serve registers the listener with the server only once its goroutine runs; closing it here
	// too makes Down take effect at once.
	ln.Close()
	if err := srv.Close(); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("failed to stop sink on %q: %w", s.addr, err)
	}
	return nil
}

// Up listens again on the same address after Down; it is a no-op when the sink is up.
func (s *Sink) Up() error {
	s.mu.Lock()
	up, closed := s.srv != nil, s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if up {
		return nil
	}
	l, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %q: %w", s.addr, err)
	}
	s.serve(l)
	return nil
}

// Close stops the sink for good. Recorded transactions stay readable.
func (s *Sink) Close() error {
	err := s.Down()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.changed)
	}
	s.mu.Unlock()
	return err
}

// AddFault arms a fault; faults fire in the order they were added.
func (s *Sink) AddFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults disarms every fault.
func (s *Sink) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// Refused counts the replies faults have given so far.
func (s *Sink) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// fault returns the reply of the first armed fault matching stage and rcpt, or nil.
func (s *Sink) fault(stage Stage, rcpt string) *smtp.SMTPError {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Stage != stage || (stage == AtRcpt && f.Rcpt != "" && !strings.EqualFold(f.Rcpt, rcpt)) {
			continue
		}
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		s.refused++
		return f.Reply
	}
	return nil
}

// Transactions returns a copy of what was accepted so far, oldest first. Data is shared, not copied:
// do not modify it.
func (s *Sink) Transactions() []Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.txs)
}

// Reset forgets the transactions recorded in memory (files in Dir stay); numbering continues.
func (s *Sink) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txs = nil
}

// Wait blocks until at least n transactions are recorded and returns them all, or fails when ctx
// ends first (with what arrived so far, for the error message).
func (s *Sink) Wait(ctx context.Context, n int) ([]Transaction, error) {
	for {
		s.mu.Lock()
		txs, changed, closed := slices.Clone(s.txs), s.changed, s.closed
		s.mu.Unlock()
		if len(txs) >= n {
			return txs, nil
		}
		if closed {
			return txs, ErrClosed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return txs, fmt.Errorf("failed to wait for %d transactions (have %d): %w", n, len(txs), ctx.Err())
		}
	}
}

// record stores a transaction, first on disk when the sink has a directory, so a transaction is
// only reported once a reader of the directory can also see it.
func (s *Sink) record(tx Transaction) error {
	s.mu.Lock()
	tx.Seq = s.next
	s.next++
	s.mu.Unlock()
	if s.opts.Dir != "" {
		tx.File = fmt.Sprintf("%03d.eml", tx.Seq)
		if err := writeFile(filepath.Join(s.opts.Dir, tx.File), tx.Data); err != nil {
			return err
		}
		meta, err := json.MarshalIndent(tx, "", "  ")
		if err != nil {
			return fmt.Errorf("failed to encode transaction %d: %w", tx.Seq, err)
		}
		if err := writeFile(filepath.Join(s.opts.Dir, fmt.Sprintf("%03d.json", tx.Seq)), append(meta, '\n')); err != nil {
			return err
		}
	}
	s.mu.Lock()
	s.txs = append(s.txs, tx)
	if !s.closed {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	s.mu.Unlock()
	if s.opts.Notify != nil {
		s.opts.Notify(tx)
	}
	return nil
}

// writeFile writes through a temporary name so readers never see half a file.
func writeFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("failed to create %q: %w", tmp, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("failed to write %q: %w", path, err)
	}
	return nil
}

type backend struct{ s *Sink }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s    *Sink
	conn *smtp.Conn
	from *string // nil until MAIL
	rcpt []string
}

// errStored is what a client sees when the sink could not store a message: a temporary failure,
// so a daemon under test retries instead of losing the message.
var errStored = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "sink failed to store the message"}

func (ss *session) reply(err *smtp.SMTPError) error {
	if err.Code == 421 {
		// go-smtp keeps the connection after any reply; a 421 means the server is going away, so
		// answer here and hang up, as a real server would.
		nc := ss.conn.Conn()
		fmt.Fprintf(nc, "%d %d.%d.%d %s\r\n", err.Code, err.EnhancedCode[0], err.EnhancedCode[1], err.EnhancedCode[2], err.Message)
		nc.Close()
	}
	return err
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if f := ss.s.fault(AtMail, ""); f != nil {
		return ss.reply(f)
	}
	ss.from, ss.rcpt = &from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if f := ss.s.fault(AtRcpt, to); f != nil {
		return ss.reply(f)
	}
	ss.rcpt = append(ss.rcpt, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err // go-smtp maps its own errors (552 5.3.4 for size) to replies
	}
	if f := ss.s.fault(AtData, ""); f != nil {
		return ss.reply(f)
	}
	from := ""
	if ss.from != nil {
		from = *ss.from
	}
	tx := Transaction{MailFrom: from, RcptTo: slices.Clone(ss.rcpt), Helo: ss.conn.Hostname(), Time: time.Now().UTC(), Size: len(data), Data: data}
	if err := ss.s.record(tx); err != nil {
		return errStored
	}
	return nil
}

func (ss *session) Reset() { ss.from, ss.rcpt = nil, nil }

func (ss *session) Logout() error { return nil }
