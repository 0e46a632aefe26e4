// Package smtpfront is the appliance's SMTP front end: a go-smtp server that
// takes mail from applications and MTAs and hands it to the durable spool.
//
// # Shape
//
// As go-smtp intends, the backend only makes sessions; each session holds the
// state of one transaction (reverse path, recipients, AUTH identity) and asks
// a [Policy] about every address before it says 250. A message is
// acknowledged only once [Spooler.Accept] reports it durably stored, and the
// reply carries the spool id.
//
// # Refusing early
//
// Everything that can be decided before the body arrives is decided at
// MAIL or RCPT time, where a refusal costs the client nothing: an
// unauthorized sender (550 5.7.1, the appliance is not a signing oracle), a
// recipient policy refuses, e.g. one without a certificate under
// missing_cert=reject (550 5.7.1), the recipient limit (452 4.5.3) and a
// declared SIZE over the limit (552 5.3.4). At the end of DATA the header
// must parse, and its From and Sender must pass the same sender check as
// MAIL FROM; only then is the message spooled.
//
// # Who may send
//
// The front end authenticates (AUTH PLAIN or LOGIN through an
// [Authenticator], only over TLS unless AllowInsecureAuth) and the [Policy]
// authorizes: it sees the SASL identity and, through [ClientAddr] and
// [AuthUser] on its context, the client's address, so it can trust networks
// and map identities to the sender addresses they may use. The daemon's policy
// refuses an anonymous client from an untrusted network with 530 5.7.0
// and an identity using someone else's address with 550 5.7.1.
//
// # Limits
//
// Besides size, recipients, line length and header size: commands outside
// a transaction (421 4.7.0 after MaxCommandsBeforeMail), failed AUTH
// (a growing delay, 421 after MaxAuthFailures on one connection, 454 4.7.0
// lockout of the address after MaxAuthFailuresPerIP), header fields, MIME
// depth and parts (550 5.6.0, checked while the body streams to the spool,
// so nothing is stored), and DATA and whole-session timeouts. See limits.go
// and mime.go.
//
// Under hostile load: the idle timeout applies to every read of the socket
// and a minimum transfer rate closes tricklers with 421 4.4.2 (conn.go); a
// global connection limit bounds descriptors, trusted networks are limited
// apart from the rest, and near the limit idle timeouts shorten so idle and
// slow connections go first (connlimit.go); while the spool, memory or the
// HSM backlog is past a threshold, new MAIL gets 451 4.3.2 (shed.go).
//
// # Errors
//
// Every error meets SMTP in [Reply], which maps it to a reply with an
// enhanced status code. Unknown errors become 554 5.0.0 with no details;
// details (paths, token labels, other recipients) go to the log only.
//
// # Addresses
//
// go-smtp parses the path and answers 501 5.5.2 when there is no
// local@domain at all ("<bob>", "<a b@c>"); what it lets through is checked
// here as an ASCII addr-spec (dot-atom local part, LDH domain or address
// literal, RFC 5321 lengths) and refused with 501 5.1.3 for a recipient or
// 501 5.1.7 for the sender. Domains are folded to lower case, local parts
// kept, and a repeated recipient is stored once.
//
// # Bytes
//
// DATA ends only at <CRLF>.<CRLF> (go-smtp's rule, which also defeats SMTP
// smuggling); bare LF and bare CR inside the body are rewritten to CRLF.
// Everything else, 8-bit text included, is spooled byte for byte. The size
// limit counts the bytes spooled.
package smtpfront

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/queue"
)

// Spooler durably stores an accepted message; Accept returns only once the
// message is on disk.
//
// Accept must read body to EOF. If reading body fails (the client went away,
// the message is over the size limit), Accept must keep nothing and return
// an error; the front end then replies according to the read error, not to
// whatever Accept wrapped it in. The returned id is shown to the client.
type Spooler interface {
	Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error)
}

// Policy answers the per-address questions the front end asks before
// accepting a message. Return [ErrSenderRefused], [ErrRecipientRefused] or a
// [*PolicyError] (its Text is shown to the client) to refuse; [ErrTemporary]
// or an error with Temporary() true for a transient failure.
type Policy interface {
	// CheckSender is asked for the MAIL FROM address ("" for the null
	// sender) and for every address in the header From and Sender fields.
	// authUser is the SASL identity, "" when the client did not
	// authenticate.
	CheckSender(ctx context.Context, mailFrom string, authUser string) error
	// CheckRecipient is asked once per RCPT TO, domain folded to lower case.
	CheckRecipient(ctx context.Context, rcpt string) error
}

// Authenticator checks the credentials of AUTH PLAIN and LOGIN. It is the
// extension point for users files and other identity sources; a nil
// Authenticator means AUTH is not offered.
type Authenticator interface {
	// Authenticate returns nil if password is right for username. Any
	// error becomes 535 5.7.8 for the client and is logged.
	Authenticate(ctx context.Context, username, password string) error
}

// UserKnower may be implemented by an Authenticator so that a failed AUTH
// can name its user in the log. A name that is no user is left out: it is
// often a password typed at the wrong prompt (LOGIN asks for the two one
// after the other), and passwords are never logged. Without it, failures
// are logged without the name.
type UserKnower interface {
	KnownUser(username string) bool
}

// Options configure a Server. Zero values take the defaults noted.
type Options struct {
	Hostname        string        // name in the greeting; default "localhost"
	MaxMessageBytes int64         // default 26214400 (25 MiB), as in the config
	MaxRecipients   int           // per transaction; default 1000
	ReadTimeout     time.Duration // idle time per command or DATA read; default 5 min
	WriteTimeout    time.Duration // per reply; default 1 min
	// DataTimeout caps a whole DATA phase; default 10 min (RFC 5321
	// section 4.5.3.2.6 "DATA termination").
	DataTimeout time.Duration
	// MaxLineLength bounds command and DATA lines; default 2000 (go-smtp's
	// default: twice RFC 5321's 1000, since real mail exceeds it).
	MaxLineLength int
	// MaxHeaderBytes bounds the message header; default 1 MiB.
	MaxHeaderBytes int
	// MaxConnsPerIP bounds concurrent connections from one address
	// outside TrustedNets; 0 means no limit.
	MaxConnsPerIP int
	// MaxConns bounds all connections together, and with them the
	// descriptors the front end holds: one more is refused with 421
	// 4.7.0 at once, written without waiting, and closed. Default 500.
	MaxConns int
	// TrustedNets are the submitters (a local MTA under content_filter,
	// the configured trusted networks) limited apart from the rest:
	// MaxConnsPerTrustedIP instead of MaxConnsPerIP, and only they may
	// take the last ReservedTrustedConns slots of MaxConns.
	TrustedNets []netip.Prefix
	// MaxConnsPerTrustedIP bounds connections from one trusted address;
	// default MaxConns (every client behind the MTA shares its address).
	MaxConnsPerTrustedIP int
	// ReservedTrustedConns of MaxConns are kept for TrustedNets; default
	// a tenth of MaxConns.
	ReservedTrustedConns int
	// StressConns is where stress begins: with this many connections
	// open, every read gets StressReadTimeout instead of ReadTimeout, and
	// reads already waiting longer are cut short. Default three quarters
	// of MaxConns.
	StressConns int
	// StressReadTimeout is the idle time per read under stress; default
	// 10s (Postfix's smtpd_timeout under stress).
	StressReadTimeout time.Duration
	// MinRateBytes within each MinRateInterval of waiting is the least a
	// client must send once it has started a command line, a message or
	// a chunk, until the server answers; below it the connection ends
	// with 421 4.4.2. Default 5000 bytes per 10s (Postfix's
	// smtpd_min_data_rate of 500 bytes/s, over a window that forgives a
	// short stall).
	MinRateBytes    int64
	MinRateInterval time.Duration
	// Load, when set, is asked at every MAIL before the sender is checked;
	// an overload refuses the transaction with 451 4.3.2 (shed.go).
	Load *LoadShedder
	// TLSConfig enables STARTTLS and ServeTLS. MinVersion is raised to TLS
	// 1.2 when lower.
	TLSConfig *tls.Config
	// Auth enables AUTH PLAIN and LOGIN (after TLS unless AllowInsecureAuth).
	Auth              Authenticator
	AllowInsecureAuth bool
	// RequireAuth refuses MAIL without AUTH (530 5.7.0).
	RequireAuth bool
	Logger      *slog.Logger // default: discard

	// Limits against abuse; see limits.go. Zero takes the default noted,
	// a negative value turns the limit off.

	// MaxCommandsBeforeMail bounds the commands (NOOP, RSET, VRFY, a
	// refused MAIL, ...) a client may send outside a transaction before
	// it is disconnected with 421 4.7.0; default 50.
	MaxCommandsBeforeMail int
	// MaxAuthFailures is how many failed AUTH attempts one connection
	// gets before it is disconnected with 421 4.7.0; default 3.
	MaxAuthFailures int
	// AuthFailureDelay is held before each 535 reply, multiplied by the
	// failures the client's address has had recently (at most 10 times);
	// default 1s.
	AuthFailureDelay time.Duration
	// MaxAuthFailuresPerIP failures from one address within AuthLockout
	// lock that address out of AUTH (454 4.7.0, no password checked)
	// until AuthLockout has passed since its last failure; default 10
	// in 15 minutes.
	MaxAuthFailuresPerIP int
	AuthLockout          time.Duration
	// SessionTimeout caps a whole connection, however busy; default 30 min.
	SessionTimeout time.Duration
	// MaxHeaderFields bounds the fields of the message header; default 1000.
	MaxHeaderFields int
	// MaxMIMEDepth bounds multipart and message/rfc822 nesting (the
	// message itself is depth 0); default 20.
	MaxMIMEDepth int
	// MaxMIMEParts bounds the body parts in the whole message; default 1000.
	MaxMIMEParts int
}

func (o *Options) setDefaults() {
	if o.Hostname == "" {
		o.Hostname = "localhost"
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = 26214400
	}
	if o.MaxRecipients <= 0 {
		o.MaxRecipients = 1000
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = 5 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = time.Minute
	}
	if o.DataTimeout <= 0 {
		o.DataTimeout = 10 * time.Minute
	}
	if o.MaxLineLength <= 0 {
		o.MaxLineLength = 2000
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 1 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.setLimitDefaults()
	if o.TLSConfig != nil {
		o.TLSConfig = o.TLSConfig.Clone()
		if o.TLSConfig.MinVersion < tls.VersionTLS12 {
			o.TLSConfig.MinVersion = tls.VersionTLS12
		}
	}
}

// Server is the SMTP front end. It is safe for concurrent use.
type Server struct {
	opts   Options
	spool  Spooler
	policy Policy
	log    *slog.Logger
	srv    *smtp.Server

	ctx    context.Context // cancelled by Close: aborts hooks in flight
	cancel context.CancelFunc
	nextID atomic.Uint64

	mu       sync.Mutex
	conns    map[*trackedConn]struct{}
	perIP    map[string]int
	trusted  int         // open connections from TrustedNets
	stressed atomic.Bool // len(conns) >= StressConns

	refusedTotal  atomic.Uint64 // connections refused at MaxConns or the reserve
	refusedPerIP  atomic.Uint64 // connections refused at a per-address limit
	rateClosed    atomic.Uint64 // connections closed below the minimum rate
	stressEntered atomic.Uint64

	authFails *failTracker
}

// New returns a Server that stores messages with spool and asks policy about
// every address. It does not listen yet.
func New(opts Options, spool Spooler, policy Policy) *Server {
	opts.setDefaults()
	s := &Server{
		opts:   opts,
		spool:  spool,
		policy: withShedding(policy, opts.Load, opts.Logger),
		log:    opts.Logger,
		conns:  make(map[*trackedConn]struct{}),
		perIP:  make(map[string]int),

		authFails: newFailTracker(opts.AuthLockout),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = opts.Hostname
	// go-smtp's DATA reader refuses a message of exactly its limit (it
	// fails on the read after the last byte, before it sees the end
	// marker), so it gets one byte of slack and the exact limit is
	// enforced by the session, which also covers BDAT. The cost: EHLO
	// advertises SIZE one higher than the limit; MAIL SIZE= is still
	// checked exactly.
	srv.MaxMessageBytes = opts.MaxMessageBytes + 1
	srv.MaxRecipients = opts.MaxRecipients
	srv.MaxLineLength = opts.MaxLineLength
	srv.ReadTimeout = opts.ReadTimeout
	srv.WriteTimeout = opts.WriteTimeout
	srv.TLSConfig = opts.TLSConfig
	srv.AllowInsecureAuth = opts.AllowInsecureAuth
	srv.ErrorLog = errorLog{s.log}
	s.srv = srv
	return s
}

// Serve accepts connections on l until Close or Shutdown. It returns nil
// after a Close or Shutdown.
func (s *Server) Serve(l net.Listener) error {
	return s.srv.Serve(&trackingListener{Listener: l, s: s, plain: true})
}

// ServeTLS is Serve with implicit TLS (port 465 style) using
// Options.TLSConfig.
func (s *Server) ServeTLS(l net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("failed to serve tls: no TLSConfig")
	}
	// The TLS listener must be outermost: go-smtp recognises implicit TLS
	// by the *tls.Conn type of the accepted connection.
	return s.srv.Serve(tls.NewListener(&trackingListener{Listener: l, s: s}, s.opts.TLSConfig))
}

// ListenAndServe listens on the TCP address addr and calls Serve.
func (s *Server) ListenAndServe(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("failed to listen on %q: %w", addr, err)
	}
	return s.Serve(l)
}

// Close closes the listeners and every connection at once; transactions in
// flight are abandoned (the client was not told 250, so it retries).
func (s *Server) Close() error {
	s.cancel()
	err := s.srv.Close()
	s.closeConns()
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, then waits for connections to end until ctx
// expires; what is left is closed as by Close. go-smtp waits for clients to
// QUIT or time out, so callers should pass a deadline.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	if ctx.Err() != nil {
		s.cancel()
		s.closeConns()
		return fmt.Errorf("failed to shut down gracefully: %w", ctx.Err())
	}
	s.cancel()
	return err
}

func (s *Server) closeConns() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// trackingListener counts connections per remote IP (MaxConnsPerIP) and
// remembers them so Shutdown can end them after its deadline; go-smtp only
// offers that through Close, which Shutdown has already used up.
type trackingListener struct {
	net.Listener
	s     *Server
	plain bool // no TLS above: a last reply can go straight to the socket
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		s := l.s
		trusted := s.isTrusted(c)
		s.mu.Lock()
		if reply, why := s.admitLocked(ip, trusted); reply != "" {
			s.mu.Unlock()
			s.log.Warn("connection refused: "+why, "client", ip, "trusted", trusted)
			// Written now, not by a goroutine that would hold the
			// descriptor: a fresh socket's buffer takes one line.
			// Under implicit TLS a plaintext 421 would only confuse
			// the handshake; closing says as much.
			refuse(c, reply, l.plain)
			continue
		}
		tc := &trackedConn{Conn: c, s: s, ip: ip, trusted: trusted}
		if s.opts.SessionTimeout > 0 {
			tc.end = time.Now().Add(s.opts.SessionTimeout)
		}
		if l.plain {
			// Before EHLO there is no session to set this.
			tc.onLimit.Store(rawSayer(c, s.opts.WriteTimeout))
		}
		s.perIP[ip]++
		if trusted {
			s.trusted++
		}
		s.conns[tc] = struct{}{}
		cut := s.updateStressLocked()
		s.mu.Unlock()
		if cut != nil {
			s.log.Warn("under stress: idle timeout shortened", "connections", len(cut)+1,
				"idle_timeout", s.opts.StressReadTimeout)
			for _, o := range cut {
				o.cutIdle(s.opts.StressReadTimeout)
			}
		}
		return tc, nil
	}
}

// refuseWriteTimeout bounds the one line written to a refused connection;
// the accept loop waits for it, so it must be short.
const refuseWriteTimeout = 100 * time.Millisecond

func refuse(c net.Conn, reply string, plain bool) {
	if plain {
		_ = c.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
		_, _ = io.WriteString(c, reply+"\r\n")
	}
	c.Close()
}

func remoteIP(c net.Conn) string {
	addr := c.RemoteAddr().String()
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

type trackedConn struct {
	net.Conn
	s       *Server
	ip      string
	trusted bool // from TrustedNets
	once    sync.Once

	// Read deadlines and the minimum rate (conn.go), guarded by rmu.
	rmu       sync.Mutex
	hard      time.Time     // a deadline from above shorter than an idle interval
	long      time.Time     // one longer than an idle interval
	reading   bool          // a Read is waiting on the socket
	readStart time.Time     // when it began
	readDL    time.Time     // the deadline it has
	active    bool          // the client has started sending: the rate window runs
	winWaited time.Duration // time spent in Read in this window
	winBytes  int64         // bytes read in this window
	readErr   error         // sticky: the client fell below the minimum rate

	// Abuse limits (limits.go); the counters are touched only from the
	// connection's goroutine, but a BDAT Data runs on another one.
	end       time.Time    // SessionTimeout; zero: none
	commands  atomic.Int64 // command lines read outside a transaction
	inTxn     atomic.Bool  // between an accepted MAIL and the reset after it
	authFails atomic.Int64
	// onLimit, set by the session, writes the 421 through whatever layer
	// (TLS) the session speaks on, before the connection is closed.
	onLimit atomic.Pointer[func(reply string)]
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.s.mu.Lock()
		delete(c.s.conns, c)
		if c.s.perIP[c.ip]--; c.s.perIP[c.ip] <= 0 {
			delete(c.s.perIP, c.ip)
		}
		if c.trusted {
			c.s.trusted--
		}
		c.s.updateStressLocked()
		c.s.mu.Unlock()
	})
	return c.Conn.Close()
}

// errorLog routes go-smtp's internal error messages (connection errors,
// recovered panics) to slog.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.emit(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.emit(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) emit(msg string) {
	level := slog.LevelWarn
	if strings.Contains(msg, "panic") {
		level = slog.LevelError
	}
	e.log.Log(context.Background(), level, "smtp server error", "detail", msg)
}
