package hsm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// sessionPool bounds the miekg-side sessions. Sessions are never closed while the pool lives,
// because closing a session destroys the session objects it made: a CEK stays valid as long as
// the session that generated it is open, and that session is simply one of ours.
type sessionPool struct {
	p11  *pkcs11.Ctx
	slot uint
	pin  string
	wait time.Duration
	sem  chan struct{} // holds one token per session handed out

	mu     sync.Mutex
	idle   []pkcs11.SessionHandle
	open   map[pkcs11.SessionHandle]bool
	closed bool
}

func newSessionPool(p11 *pkcs11.Ctx, slot uint, pin string, max int, wait time.Duration) *sessionPool {
	return &sessionPool{
		p11: p11, slot: slot, pin: pin, wait: wait,
		sem:  make(chan struct{}, max),
		open: map[pkcs11.SessionHandle]bool{},
	}
}

// get hands out a session, waiting at most until ctx is done or the pool's own wait expires.
func (p *sessionPool) get(ctx context.Context, op string) (pkcs11.SessionHandle, error) {
	if err := ctx.Err(); err != nil {
		return 0, fail(op, err)
	}
	select {
	case p.sem <- struct{}{}:
	default:
		timer := time.NewTimer(p.wait)
		defer timer.Stop()
		select {
		case p.sem <- struct{}{}:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				return 0, fail(op, ctx.Err())
			}
			return 0, &Error{Op: op, Kind: ErrPoolExhausted, Err: ctx.Err()}
		case <-timer.C:
			return 0, &Error{Op: op, Kind: ErrPoolExhausted, Err: fmt.Errorf("all %d sessions busy for %v", cap(p.sem), p.wait)}
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		<-p.sem
		return 0, &Error{Op: op, Kind: ErrTokenGone, Err: errors.New("session pool closed")}
	}
	if n := len(p.idle); n > 0 {
		s := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return s, nil
	}
	p.mu.Unlock()
	s, err := p.openSession()
	if err != nil {
		<-p.sem
		return 0, fail(op, err)
	}
	p.mu.Lock()
	p.open[s] = true
	p.mu.Unlock()
	return s, nil
}

func (p *sessionPool) openSession() (pkcs11.SessionHandle, error) {
	s, err := p.p11.OpenSession(p.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return 0, err
	}
	// Login state belongs to the application, and crypto11's long-lived session already holds
	// it, so this normally answers CKR_USER_ALREADY_LOGGED_IN; it matters only if that session
	// was lost.
	if err := p.p11.Login(s, pkcs11.CKU_USER, p.pin); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		_ = p.p11.CloseSession(s)
		return 0, err
	}
	return s, nil
}

// put returns a session. A session the token declared dead is dropped, not reused.
func (p *sessionPool) put(s pkcs11.SessionHandle, err error) {
	var code pkcs11.Error
	dead := errors.As(err, &code) && (code == pkcs11.CKR_SESSION_HANDLE_INVALID || code == pkcs11.CKR_SESSION_CLOSED ||
		code == pkcs11.CKR_DEVICE_REMOVED || code == pkcs11.CKR_TOKEN_NOT_PRESENT)
	p.mu.Lock()
	switch {
	case p.closed || dead:
		delete(p.open, s)
		_ = p.p11.CloseSession(s)
	default:
		p.idle = append(p.idle, s)
	}
	p.mu.Unlock()
	<-p.sem
}

// close closes every session the pool opened (and with them the session objects they made).
// Callers ensure no session is handed out: the Token's write lock does.
func (p *sessionPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for s := range p.open {
		_ = p.p11.CloseSession(s)
	}
	p.open = map[pkcs11.SessionHandle]bool{}
	p.idle = nil
}
