package smtpfront

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Limits against a client that talks without sending mail, guesses
// passwords, or holds a connection open forever. The message-size, line and
// header limits are in body.go; MIME structure in mime.go.
//
// Commands are counted where go-smtp lets us see them: it sets the read
// deadline before reading every command line (and the TLS layer passes that
// down to the tracked connection), so every SetReadDeadline outside a
// transaction is one command. Inside a transaction (after an accepted MAIL,
// until go-smtp resets it) nothing is counted: RCPT and DATA are bounded by
// their own limits.

func (o *Options) setLimitDefaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	def(&o.MaxCommandsBeforeMail, 50)
	def(&o.MaxAuthFailures, 3)
	def(&o.MaxAuthFailuresPerIP, 10)
	def(&o.MaxHeaderFields, 1000)
	def(&o.MaxMIMEDepth, 20)
	def(&o.MaxMIMEParts, 1000)
	defDur(&o.AuthFailureDelay, time.Second)
	defDur(&o.AuthLockout, 15*time.Minute)
	defDur(&o.SessionTimeout, 30*time.Minute)
	o.setConnLimitDefaults()
}

// Replies of the limits; each one ends the connection.
const (
	replyTooManyCommands = "421 4.7.0 too many commands without a transaction, closing connection"
	replyTooManyAuth     = "421 4.7.0 too many failed authentication attempts, closing connection"
)

// abort writes a last reply and closes the connection. go-smtp flushes
// after every reply, so nothing of its own is pending.
func (c *trackedConn) abort(reply string) {
	if f := c.onLimit.Load(); f != nil {
		(*f)(reply)
	}
	c.Close()
}

// rawSayer writes a last reply to c: the raw socket of a plaintext
// listener, or the *tls.Conn a session speaks on.
func rawSayer(c net.Conn, timeout time.Duration) *func(string) {
	say := func(reply string) {
		_ = c.SetWriteDeadline(time.Now().Add(timeout))
		_, _ = io.WriteString(c, reply+"\r\n")
	}
	return &say
}

// trackedOf finds the tracked connection under go-smtp's (possibly TLS)
// connection.
func trackedOf(c net.Conn) *trackedConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	t, _ := c.(*trackedConn)
	return t
}

// failTracker remembers recent AUTH failures per client address, across
// connections: a guesser that reconnects after every 421 still slows down
// and then is locked out.
type failTracker struct {
	window time.Duration
	mu     sync.Mutex
	m      map[string]*failRecord
}

type failRecord struct {
	n    int
	last time.Time
}

// maxTracked bounds the tracker's memory against a spray from many
// addresses; when full, expired entries go first, then the oldest.
const maxTracked = 10000

func newFailTracker(window time.Duration) *failTracker {
	return &failTracker{window: window, m: make(map[string]*failRecord)}
}

// count returns the failures of ip within the window.
func (f *failTracker) count(ip string, now time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.m[ip]
	if r == nil {
		return 0
	}
	if now.Sub(r.last) > f.window {
		delete(f.m, ip)
		return 0
	}
	return r.n
}

// fail records one failure of ip and returns the failures in the window.
func (f *failTracker) fail(ip string, now time.Time) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.m[ip]
	if r != nil && now.Sub(r.last) > f.window {
		r = nil
	}
	if r == nil {
		if len(f.m) >= maxTracked {
			f.evict(now)
		}
		r = &failRecord{}
		f.m[ip] = r
	}
	r.n++
	r.last = now
	return r.n
}

func (f *failTracker) evict(now time.Time) {
	var oldest string
	var oldestT time.Time
	for ip, r := range f.m {
		if now.Sub(r.last) > f.window {
			delete(f.m, ip)
			continue
		}
		if oldest == "" || r.last.Before(oldestT) {
			oldest, oldestT = ip, r.last
		}
	}
	if len(f.m) >= maxTracked {
		delete(f.m, oldest)
	}
}

// authDelay is how long to hold the 535 reply after the n-th recent
// failure from one address.
func (o *Options) authDelay(n int) time.Duration {
	if o.AuthFailureDelay <= 0 {
		return 0
	}
	return o.AuthFailureDelay * time.Duration(min(n, 10))
}

type clientKey struct{}

type identityKey struct{}

// identity is the session's AUTH identity as seen through its context;
// the session's own field is guarded by its mutex, which a policy called
// from Mail must not take.
type identity struct{ user atomic.Pointer[string] }

// AuthUser returns the SASL identity of the session ctx belongs to, ""
// before (or without) a successful AUTH. Policy methods that are not
// given the identity (a [ListPolicy]'s CheckPoster) read it here.
func AuthUser(ctx context.Context) string {
	id, _ := ctx.Value(identityKey{}).(*identity)
	if id == nil {
		return ""
	}
	if u := id.user.Load(); u != nil {
		return *u
	}
	return ""
}

// ClientAddr returns the address of the SMTP client whose session ctx
// belongs to; a Policy uses it to decide what an unauthenticated client
// from a trusted network may do. IPv4-mapped IPv6 addresses are unmapped.
func ClientAddr(ctx context.Context) (netip.Addr, bool) {
	a, ok := ctx.Value(clientKey{}).(netip.Addr)
	return a, ok
}

// WithClientAddr returns ctx carrying addr as [ClientAddr] reports it: what
// the session does for its policy, for tests of a Policy and for other
// front ends.
func WithClientAddr(ctx context.Context, addr netip.Addr) context.Context {
	if !addr.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, clientKey{}, addr.Unmap())
}

func withClientAddr(ctx context.Context, c net.Conn) context.Context {
	var a netip.Addr
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a = tcp.AddrPort().Addr()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		a = ap.Addr()
	}
	ctx = WithClientAddr(ctx, a)
	if tc := trackedOf(c); tc != nil {
		ctx = context.WithValue(ctx, connKey{}, tc)
	}
	return ctx
}

type connKey struct{}

// connOf returns the tracked connection of the session ctx belongs to.
func connOf(ctx context.Context) *trackedConn {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	return tc
}
