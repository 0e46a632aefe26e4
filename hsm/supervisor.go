package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sync"
	"time"
)

// A token watch keeps one Token usable across token loss, so that an HSM
// outage defers sealing instead of failing mail.
//
// Every operation goes through it. While the token is up, an operation that fails with
// ErrTokenGone marks it down (once per connection: a failure from a connection that has
// already been replaced is stale news) and wakes the reconnect loop, which calls Reconnect (or
// Open, if the token was never there) with doubling waits up to MaxWait. While it is down, every
// operation fails at once with a Temporary() error, without touching the token, so the queue
// defers and keeps the message and the front end, unless hsm.require_up says otherwise, keeps
// accepting. An idle token is probed every ProbeEvery, so /readyz and the log learn of a loss
// before the next message does. One log line per change of state: "hsm down", "hsm up".
//
// A token missing when serve starts is an outage like any other: the daemon starts, accepts and
// spools, and seals once the token appears. Only faults an operator must fix before anything can
// work stop the start: no module file, a refused PIN, an impossible setting.

// ErrUnavailable is what operations fail with while the token is unavailable.
var ErrUnavailable = errors.New("hsm unavailable")

// UnavailableError is ErrUnavailable with the failure that took the token down. It is temporary, so the
// queue defers the message and smtpfront answers 451 4.3.0 where it meets one.
type UnavailableError struct{ Cause error }

func (e *UnavailableError) Error() string {
	if e.Cause == nil {
		return "failed to use the token: " + ErrUnavailable.Error()
	}
	return "failed to use the token: " + ErrUnavailable.Error() + ": " + e.Cause.Error()
}

func (e *UnavailableError) Unwrap() []error {
	if e.Cause == nil {
		return []error{ErrUnavailable}
	}
	return []error{ErrUnavailable, e.Cause}
}

func (e *UnavailableError) Temporary() bool { return true }

// watchOptions configure newWatch; zero durations take the defaults.
type watchOptions struct {
	// Open makes the Token; it is called at start and again until it succeeds if the token was
	// missing at start.
	Open func() (*Token, error)
	// ProbeKey, when set, is a signing key the idle probe signs with: SoftHSM with its object
	// store gone still makes session keys, but signing with a token key fails.
	ProbeKey   string
	MinWait    time.Duration // first wait between reconnect attempts; default 200ms
	MaxWait    time.Duration // cap of the doubling wait; default 30s
	ProbeEvery time.Duration // idle health probe; default 15s
	// OnUp is called after each recovery (not at a healthy start), outside the lock: the queue
	// retries deferred sealing at once instead of at its next backoff step.
	OnUp func()
	// OnDown is called when an operation finds the token gone, outside the lock.
	OnDown func()
	Log    *slog.Logger
	// FailMissing: a token that is not there at start ends the start (ErrTokenNotFound).
	FailMissing bool
}

type watch struct {
	opts watchOptions

	mu    sync.Mutex
	tok   *Token      // nil until the first successful Open
	epoch uint64      // bumped at each successful (re)connect
	cause error       // why the token is down; nil while it is up
	since time.Time   // when the current state began
	oaep  crypto.Hash // the sealer asks for it per message

	wake   chan struct{} // capacity 1: "a failure was seen, look now"
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// newWatch opens the token and starts the reconnect loop. A token that cannot be opened
// for a reason that may pass (missing, module not initialisable because the token store is
// absent) leaves the supervisor down and retrying; see FatalAtStart for the others.
func newWatch(opts watchOptions) (*watch, error) {
	if opts.Open == nil {
		return nil, errors.New("failed to start token supervisor: no Open function")
	}
	if opts.MinWait <= 0 {
		opts.MinWait = 200 * time.Millisecond
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 30 * time.Second
	}
	opts.MaxWait = max(opts.MaxWait, opts.MinWait)
	if opts.ProbeEvery <= 0 {
		opts.ProbeEvery = 15 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &watch{
		opts:  opts,
		since: time.Now(),
		wake:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
	tok, err := opts.Open()
	switch {
	case err == nil:
		s.tok, s.epoch, s.oaep = tok, 1, tok.OAEPHash()
	case FatalAtStart(err):
		return nil, err
	case opts.FailMissing && errors.Is(err, ErrTokenNotFound):
		return nil, err
	default:
		s.cause = err
		// Until the token has been seen, assume the OAEP hash every OAEP-capable token does.
		s.oaep = crypto.SHA1
		opts.Log.Error("hsm down", "err", err)
	}
	go s.run()
	return s, nil
}

// FatalAtStart sorts Open failures at start: those no waiting can cure end the start.
func FatalAtStart(err error) bool {
	switch {
	case errors.Is(err, ErrPINIncorrect), errors.Is(err, ErrInvalidArgument), errors.Is(err, ErrMechanism):
		return true
	case errors.Is(err, ErrModule) && errors.Is(err, fs.ErrNotExist):
		return true // the module file itself is missing, not the token
	}
	return false
}

// Healthy is nil while the token is up, else a Temporary() error saying why it is down.
func (s *watch) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause != nil {
		return &UnavailableError{Cause: s.cause}
	}
	if s.closed {
		return &UnavailableError{Cause: ErrClosed}
	}
	return nil
}

// current returns the live token and its epoch, or the down error.
func (s *watch) current() (*Token, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cause != nil || s.tok == nil {
		return nil, 0, &UnavailableError{Cause: s.cause}
	}
	return s.tok, s.epoch, nil
}

// observe passes err through, marking the token down when err says it is gone and the failing
// operation ran on the current connection.
func (s *watch) observe(epoch uint64, err error) error {
	if err == nil || !errors.Is(err, ErrTokenGone) {
		return err
	}
	s.mu.Lock()
	if s.closed || s.cause != nil || epoch != s.epoch {
		s.mu.Unlock()
		return err
	}
	s.cause, s.since = err, time.Now()
	s.mu.Unlock()
	s.opts.Log.Error("hsm down", "err", err)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if s.opts.OnDown != nil {
		s.opts.OnDown()
	}
	return err
}

// run reconnects while the token is down and probes it while it is up, until Close.
func (s *watch) run() {
	defer close(s.done)
	probe := time.NewTicker(s.opts.ProbeEvery)
	defer probe.Stop()
	for {
		if err := s.Healthy(); err != nil && !errors.Is(err, ErrClosed) {
			if !s.recover() {
				return
			}
			continue
		}
		select {
		case <-s.stop:
			return
		case <-s.wake:
		case <-probe.C:
			s.probe()
		}
	}
}

// recover retries until the token is back (true) or the supervisor is closed (false).
func (s *watch) recover() bool {
	wait := s.opts.MinWait
	attempts := 0
	for {
		select {
		case <-s.stop:
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, s.opts.MaxWait)
		attempts++
		s.mu.Lock()
		tok := s.tok
		s.mu.Unlock()
		var err error
		if tok == nil {
			tok, err = s.opts.Open()
		} else {
			err = tok.Reconnect()
		}
		if err != nil {
			s.mu.Lock()
			prev := s.cause
			s.cause = err
			s.mu.Unlock()
			// A new kind of failure is news (the token is back but refuses the PIN, say);
			// the same one again every few seconds is not.
			if kind(err) != kind(prev) {
				s.opts.Log.Warn("hsm still down", "attempt", attempts, "err", err)
			} else {
				s.opts.Log.Debug("hsm reconnect failed", "attempt", attempts, "err", err)
			}
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			if s.tok == nil {
				tok.Close() // opened for the first time while Close ran
			}
			return false
		}
		downFor := time.Since(s.since)
		s.tok, s.oaep, s.cause, s.since = tok, tok.OAEPHash(), nil, time.Now()
		s.epoch++
		s.mu.Unlock()
		s.opts.Log.Info("hsm up", "down_for", downFor.Round(time.Millisecond).String(), "attempts", attempts)
		s.mu.Lock()
		onUp := s.opts.OnUp
		s.mu.Unlock()
		if onUp != nil {
			onUp()
		}
		return true
	}
}

// kind is the sentinel an hsm error is sorted by, or err itself.
func kind(err error) error {
	var he *Error
	if errors.As(err, &he) {
		return he.Kind
	}
	return err
}

// probe exercises an idle token the way sealing will.
func (s *watch) probe() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.opts.ProbeKey != "" {
		signer, err := s.Signer(ctx, s.opts.ProbeKey)
		if err == nil {
			digest := sha256.Sum256([]byte("appliance hsm probe"))
			_, err = signer.Sign(nil, digest[:], crypto.SHA256)
		}
		if err != nil {
			return // observe has marked a lost token down; anything else is not the probe's business
		}
	}
	if tok, _, err := s.current(); err != nil || tok.Roles()&RoleContent == 0 {
		return // a sign-only token makes no content keys
	}
	k, err := s.ContentKey(ctx)
	if err == nil {
		k.Destroy(ctx)
	}
}

// Close stops the loop and closes the token.
func (s *watch) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.stop)
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tok != nil {
		return s.tok.Close()
	}
	return nil
}

// OAEPHash is the strongest OAEP hash of the token as last connected; SHA-1 if it was never up.
func (s *watch) OAEPHash() crypto.Hash {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.oaep
}

// ContentKey makes a content key on the token.
func (s *watch) ContentKey(ctx context.Context) (*SupervisedKey, error) {
	tok, epoch, err := s.current()
	if err != nil {
		return nil, err
	}
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		return nil, s.observe(epoch, err)
	}
	return &SupervisedKey{s: s, epoch: epoch, k: k}, nil
}

// UnwrapCEK unwraps a list's content key on the token. A wrapped key the token refuses
// (ErrUnwrap, ErrOAEPHash) is the message's fault and leaves the token up.
func (s *watch) UnwrapCEK(ctx context.Context, keyURI string, wrapped []byte, oaepHash crypto.Hash) (*SupervisedKey, error) {
	tok, epoch, err := s.current()
	if err != nil {
		return nil, err
	}
	k, err := tok.UnwrapCEK(ctx, keyURI, wrapped, oaepHash)
	if errors.Is(err, ErrUnwrap) || errors.Is(err, ErrOAEPHash) {
		return nil, err
	}
	if err != nil {
		return nil, s.observe(epoch, err)
	}
	return &SupervisedKey{s: s, epoch: epoch, k: k}, nil
}

// Signer finds a signing key. Its Sign reports a lost token too.
func (s *watch) Signer(ctx context.Context, keyURI string) (crypto.Signer, error) {
	tok, epoch, err := s.current()
	if err != nil {
		return nil, err
	}
	signer, err := tok.Signer(ctx, keyURI)
	if err != nil {
		return nil, s.observe(epoch, err)
	}
	return &supervisedSigner{s: s, inner: signer}, nil
}

// SupervisedKey reports a lost token seen while using a content key. Keys do not survive a
// reconnect, so a failure of a key from an earlier connection is not news.
type SupervisedKey struct {
	s     *watch
	epoch uint64
	k     *CEK
}

func (k *SupervisedKey) EncryptCBC(ctx context.Context, iv []byte, plaintext io.Reader, ciphertext io.Writer) error {
	return k.s.observe(k.epoch, k.k.EncryptCBC(ctx, iv, plaintext, ciphertext))
}

func (k *SupervisedKey) EncryptGCM(ctx context.Context, nonce, aad []byte, plaintext io.Reader, ciphertext io.Writer) ([]byte, error) {
	tag, err := k.k.EncryptGCM(ctx, nonce, aad, plaintext, ciphertext)
	return tag, k.s.observe(k.epoch, err)
}

func (k *SupervisedKey) WrapRSA(ctx context.Context, pub *rsa.PublicKey, oaepHash crypto.Hash) ([]byte, error) {
	b, err := k.k.WrapRSA(ctx, pub, oaepHash)
	return b, k.s.observe(k.epoch, err)
}

// Destroy frees the key on the token; seal calls it once the message is sealed.
func (k *SupervisedKey) Destroy(ctx context.Context) error {
	return k.k.Destroy(ctx)
}

// supervisedSigner reports a lost token seen while signing. hsm's signer finds its key again
// after a reconnect, so the epoch that counts is the one current when Sign starts.
type supervisedSigner struct {
	s     *watch
	inner crypto.Signer
}

func (g *supervisedSigner) Public() crypto.PublicKey { return g.inner.Public() }

func (g *supervisedSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	_, epoch, err := g.s.current()
	if err != nil {
		return nil, err
	}
	sig, err := g.inner.Sign(rand, digest, opts)
	return sig, g.s.observe(epoch, err)
}

// SetOnUp sets the function called after each recovery; see watchOptions.OnUp.
func (s *watch) SetOnUp(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.OnUp = f
}

// Supervisor is the daemon's one token layer: one watch per configured token, handing out
// signers and content keys. Each signing key goes to the token its URI picks (the Route of
// SupervisorOptions), so a card that is removed defers only the
// mail of the senders whose keys are on it; content keys come from the content token or, while it
// is down, from its fallback.
//
// A token with a standby (two tokens holding the same keys) hands its work to the standby while
// it is down, and takes it back once it is up: an operation that fails on the primary because it
// went away is tried once more on the standby, and the queue is told to retry what it deferred.
// One log line per switch: "token failover", "token failback".
type Supervisor struct {
	watches  map[string]*watch
	names    []string // configuration order
	route    func(keyURI string) (string, error)
	content  string
	fallback string            // "" when there is none
	standby  map[string]string // primary -> standby
	log      *slog.Logger

	mu     sync.Mutex
	active map[string]string // primary -> the token doing its work now
	onUp   func()
}

// TokenSpec is one token a Supervisor keeps.
type TokenSpec struct {
	Config Config // Config.Name names the token
	// Standby names another TokenSpec holding the same keys and every role of this one.
	Standby string
	// Keys are the signing keys on the token: the idle probe signs with the first, and start
	// refuses a key the token has no mechanism for.
	Keys []string
}

// SupervisorOptions configure NewSupervisor; zero durations take the defaults.
type SupervisorOptions struct {
	Tokens []TokenSpec
	// Route names the token a key URI picks; with one token it is not called.
	Route func(keyURI string) (string, error)
	// Content names the token making content keys; Fallback, when set, makes them while it is
	// down.
	Content, Fallback string
	// Strict opens every token at once and fails if one cannot be: the offline commands have
	// nothing to defer.
	Strict bool
	// FailMissing stops the start when a token matches no token the module has (a label that is
	// mistyped, or a card not inserted); without it such a token is waited for, as one that
	// goes away later is.
	FailMissing bool
	MinWait     time.Duration // first wait between reconnect attempts; default 200ms
	MaxWait     time.Duration // cap of the doubling wait; default 30s
	ProbeEvery  time.Duration // idle health probe; default 15s
	Log         *slog.Logger
}

// NewSupervisor opens every token under a watch. A token lacking a mechanism its roles or keys
// need, a refused PIN or an impossible setting stops the start; a token that is not there yet
// does not, unless Strict.
func NewSupervisor(o SupervisorOptions) (*Supervisor, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(o.Tokens) == 0 {
		return nil, &Error{Op: "start token supervisor", Kind: ErrInvalidArgument, Err: errors.New("no tokens")}
	}
	set := &Supervisor{watches: map[string]*watch{}, route: o.Route, content: o.Content, fallback: o.Fallback,
		standby: map[string]string{}, active: map[string]string{}, log: log.With("component", "hsm")}
	if set.content == "" {
		set.content = o.Tokens[0].Config.name()
	}
	keys := map[string][]string{}
	for _, t := range o.Tokens {
		name := t.Config.name()
		keys[name] = append(keys[name], t.Keys...)
		if t.Standby != "" {
			set.standby[name] = t.Standby
		}
	}
	// Names are checked before any token is opened.
	for primary, sb := range set.standby {
		if !hasToken(o.Tokens, sb) {
			return nil, &Error{Op: fmt.Sprintf("start token %q", primary), Kind: ErrInvalidArgument, Err: fmt.Errorf("standby %q is not a token", sb)}
		}
	}
	if !hasToken(o.Tokens, set.content) || (set.fallback != "" && !hasToken(o.Tokens, set.fallback)) {
		return nil, &Error{Op: "start token supervisor", Kind: ErrInvalidArgument, Err: fmt.Errorf("content token %q or fallback %q is not a token", set.content, set.fallback)}
	}
	// A standby holds its primary's keys, named without the primary's token attributes.
	for primary, sb := range set.standby {
		for _, k := range keys[primary] {
			keys[sb] = append(keys[sb], withoutToken(k))
		}
	}
	for _, t := range o.Tokens {
		cfg, name := t.Config, t.Config.name()
		opts := watchOptions{
			Open:       func() (*Token, error) { return Open(cfg) },
			MinWait:    o.MinWait,
			MaxWait:    o.MaxWait,
			ProbeEvery: o.ProbeEvery,
			Log:        log.With("component", "hsm", "token", name),
			OnDown:     set.downed,
			// A standby is waited for: its primary carries the start.
			FailMissing: o.FailMissing && !isStandby(set.standby, name),
		}
		if k := keys[name]; len(k) > 0 {
			opts.ProbeKey = k[0]
		}
		if o.Strict {
			tok, err := Open(cfg)
			if err != nil {
				set.Close()
				return nil, err
			}
			opts.Open = func() (*Token, error) { return tok, nil }
		}
		w, err := newWatch(opts)
		if err != nil {
			set.Close()
			return nil, fmt.Errorf("token %q: %w", name, err)
		}
		set.watches[name] = w
		set.names = append(set.names, name)
		if err := checkKeyMechanisms(w, keys[name]); err != nil {
			set.Close()
			return nil, err
		}
	}
	return set, nil
}

func hasToken(specs []TokenSpec, name string) bool {
	for _, t := range specs {
		if t.Config.name() == name {
			return true
		}
	}
	return false
}

// TokenHealthy is Healthy of the token called name itself, whatever its standby does.
func (s *Supervisor) TokenHealthy(name string) error {
	w, ok := s.watches[name]
	if !ok {
		return &Error{Op: "check token", Kind: ErrInvalidArgument, Err: fmt.Errorf("no token named %q", name)}
	}
	return w.Healthy()
}

// checkKeyMechanisms refuses, at start, a key its token cannot sign with (an EC key on a card
// without CKM_ECDSA, say). A token that is down is checked when it comes up, by the same lookup.
func checkKeyMechanisms(w *watch, keys []string) error {
	if w.Healthy() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		if _, err := w.Signer(ctx, k); errors.Is(err, ErrMechanism) {
			return err
		}
	}
	return nil
}

// withoutToken drops the token attributes of a key URI, so that the key is found by label and id
// on whichever token it is asked of: the standby holds the same keys under another label.
func withoutToken(keyURI string) string {
	u, err := ParseURI(keyURI)
	if err != nil {
		return keyURI // the token's own parse reports it
	}
	u.Token, u.Serial, u.Manufacturer, u.Model = "", "", "", ""
	return u.String()
}

// nameFor is the token keyURI picks.
func (s *Supervisor) nameFor(keyURI string) (string, error) {
	if len(s.names) == 1 {
		return s.names[0], nil
	}
	name, err := s.route(keyURI)
	if err != nil {
		return "", fmt.Errorf("failed to pick the token of %q: %w", keyURI, err)
	}
	return name, nil
}

// pick is the token doing name's work now: name while it is up, else its standby while that is
// up, else name (whose error says why it is down). A change is logged once.
func (s *Supervisor) pick(name string) (*watch, string) {
	use := name
	if sb, ok := s.standby[name]; ok && s.watches[name].Healthy() != nil && s.watches[sb].Healthy() == nil {
		use = sb
	}
	s.mu.Lock()
	prev, seen := s.active[name]
	s.active[name] = use
	s.mu.Unlock()
	switch {
	case !seen && use == name, prev == use:
	case use == name:
		s.log.Info("token failback", "token", name, "from", prev)
	default:
		s.log.Warn("token failover", "token", name, "to", use, "cause", s.watches[name].Healthy())
	}
	return s.watches[use], use
}

// Active is the token doing the work of the configured token name now.
func (s *Supervisor) Active(name string) string {
	_, use := s.pick(name)
	return use
}

// retry runs op on the token doing name's work, and once more when it failed because that token
// went away and a standby can take over.
func (s *Supervisor) retry(name string, op func(w *watch, onStandby bool) error) error {
	w, use := s.pick(name)
	err := op(w, use != name)
	if err == nil || !IsTemporary(err) {
		return err
	}
	if w2, use2 := s.pick(name); use2 != use {
		return op(w2, use2 != name)
	}
	return err
}

// downed is every watch's OnDown: when a token with a standby (or the content token, with a
// fallback) goes away, mail deferred by the failure is retried at once, on the standby.
func (s *Supervisor) downed() {
	s.mu.Lock()
	f := s.onUp
	s.mu.Unlock()
	if f != nil && (len(s.standby) > 0 || s.fallback != "") {
		f()
	}
}

// contentWatch is the token that makes content keys now: the content token (or its standby)
// while up, else the fallback while that is up, else the content token.
func (s *Supervisor) contentWatch() *watch {
	w, _ := s.pick(s.content)
	if w.Healthy() != nil && s.fallback != "" {
		if f, _ := s.pick(s.fallback); f.Healthy() == nil {
			return f
		}
	}
	return w
}

// Signer finds a signing key on its token. A key whose token has a standby gets
// a Signer that signs on whichever of the two is up.
func (s *Supervisor) Signer(ctx context.Context, keyURI string) (crypto.Signer, error) {
	name, err := s.nameFor(keyURI)
	if err != nil {
		return nil, err
	}
	if _, ok := s.standby[name]; !ok {
		return s.watches[name].Signer(ctx, keyURI)
	}
	var pub crypto.PublicKey
	err = s.retry(name, func(w *watch, onStandby bool) error {
		uri := keyURI
		if onStandby {
			uri = withoutToken(keyURI)
		}
		g, err := w.Signer(ctx, uri)
		if err == nil {
			pub = g.Public()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &standbySigner{s: s, name: name, uri: keyURI, pub: pub}, nil
}

// standbySigner signs on the primary or its standby, whichever is up, with the one key both hold.
type standbySigner struct {
	s    *Supervisor
	name string
	uri  string
	pub  crypto.PublicKey
}

func (g *standbySigner) Public() crypto.PublicKey { return g.pub }

func (g *standbySigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	var sig []byte
	err := g.s.retry(g.name, func(w *watch, onStandby bool) error {
		uri := g.uri
		if onStandby {
			uri = withoutToken(g.uri)
		}
		inner, err := w.Signer(context.Background(), uri)
		if err != nil {
			return err
		}
		if x, ok := inner.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !x.Equal(g.pub) {
			return &Error{Op: fmt.Sprintf("sign with %q", uri), Kind: ErrKeyNotFound,
				Err: errors.New("the standby's key is not the primary's")}
		}
		sig, err = inner.Sign(rand, digest, opts)
		return err
	})
	return sig, err
}

// ContentKey makes a content key on the content token.
func (s *Supervisor) ContentKey(ctx context.Context) (*SupervisedKey, error) {
	k, err := s.contentWatch().ContentKey(ctx)
	if err != nil && IsTemporary(err) {
		// The content token may just have been found gone: its standby or fallback may be up.
		return s.contentWatch().ContentKey(ctx)
	}
	return k, err
}

// OAEPHash is the OAEP hash of the token that makes content keys now.
func (s *Supervisor) OAEPHash() crypto.Hash { return s.contentWatch().OAEPHash() }

// UnwrapCEK unwraps a list's content key on the token of the list's key.
func (s *Supervisor) UnwrapCEK(ctx context.Context, keyURI string, wrapped []byte, oaepHash crypto.Hash) (*SupervisedKey, error) {
	name, err := s.nameFor(keyURI)
	if err != nil {
		return nil, err
	}
	var k *SupervisedKey
	err = s.retry(name, func(w *watch, onStandby bool) error {
		uri := keyURI
		if onStandby {
			uri = withoutToken(keyURI)
		}
		k, err = w.UnwrapCEK(ctx, uri, wrapped, oaepHash)
		return err
	})
	return k, err
}

// Healthy is nil while content keys can be made (the content token or its fallback is up), else
// a Temporary() error saying why not. A sign-only token that is down defers only its senders'
// mail, so it does not make the daemon unready.
func (s *Supervisor) Healthy() error { return s.contentWatch().Healthy() }

// SetOnUp sets the function called after any token recovers, and when a token with a standby
// or fallback goes away.
func (s *Supervisor) SetOnUp(f func()) {
	s.mu.Lock()
	s.onUp = f
	s.mu.Unlock()
	for _, w := range s.watches {
		w.SetOnUp(f)
	}
}

// Close stops every watch and closes its token.
func (s *Supervisor) Close() error {
	var errs []error
	for _, w := range s.watches {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}

// Token is the connected token called name, for the commands that work on one token.
func (s *Supervisor) Token(name string) (*Token, error) {
	w, ok := s.watches[name]
	if !ok {
		return nil, fmt.Errorf("no token named %q", name)
	}
	tok, _, err := w.current()
	return tok, err
}

func isStandby(standby map[string]string, name string) bool {
	for _, sb := range standby {
		if sb == name {
			return true
		}
	}
	return false
}
