package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"appliance/queue"
	"appliance/smime"
	"appliance/split"
)

// session is one SMTP connection's state. go-smtp calls it from the
// connection's goroutine only (BDAT runs Data on another goroutine, but
// never concurrently with Mail, Rcpt or Reset for the same transaction).
type session struct {
	s      *Server
	conn   *smtp.Conn
	tc     *trackedConn // nil only in tests that bypass the listener
	ident  *identity    // authUser for the policy, through ctx
	ctx    context.Context
	cancel context.CancelFunc
	log    *slog.Logger

	// mu guards the fields below: with BDAT, go-smtp runs Data on its own
	// goroutine, and a RSET can arrive while it reads the first chunk.
	mu       sync.Mutex
	authUser string

	// Per transaction; cleared by Reset.
	hasFrom  bool
	mailFrom string
	rcpts    []string
	seen     map[string]bool
	// senderErr is a MAIL FROM refusal held for the RCPTs (see ListPolicy).
	senderErr error
}

var (
	_ smtp.Session     = (*session)(nil)
	_ smtp.AuthSession = (*session)(nil)
)

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	ident := &identity{}
	ctx, cancel := context.WithCancel(context.WithValue(withClientAddr(s.ctx, c.Conn()), identityKey{}, ident))
	id := "c" + strconv.FormatUint(s.nextID.Add(1), 10)
	ss := &session{
		s:      s,
		conn:   c,
		tc:     trackedOf(c.Conn()),
		ident:  ident,
		ctx:    ctx,
		cancel: cancel,
		log:    s.log.With("conn", id, "client", c.Conn().RemoteAddr().String()),
	}
	if ss.tc != nil {
		// After STARTTLS (or on the implicit TLS listener) this is a
		// session on the TLS connection: the last words go through TLS.
		ss.tc.onLimit.Store(rawSayer(c.Conn(), s.opts.WriteTimeout))
	}
	return ss, nil
}

// fail maps err to its reply and logs the details the client does not see.
func (ss *session) fail(stage Stage, msg string, err error, attrs ...any) error {
	r := Reply(stage, err)
	level := slog.LevelInfo
	var ne net.Error
	var overload *OverloadError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, smtp.ErrDataReset), errors.As(err, &ne):
		// The client went away, reset or stalled: its problem, not ours.
	case errors.As(err, &overload):
		// Shedding is logged once when it begins and once when it ends (LoadShedder) and
		// counted per reason; a line per refused MAIL would be thousands a second, at the
		// moment the machine has least to spare.
		level = slog.LevelDebug
	case r.Code == 554, r.Code == 451, r.Code == 452 && r.EnhancedCode == replySpoolFull.EnhancedCode:
		level = slog.LevelError
	}
	attrs = append(attrs, "reply", fmt.Sprintf("%d %d.%d.%d", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2]), "err", err)
	ss.log.Log(ss.ctx, level, msg, attrs...)
	return r
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Auth == nil {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts PLAIN or LOGIN. Both end in the same password check, so the
// TLS rule (go-smtp's, before it asks for a mechanism), the failure
// counting, delay and lockout, and the sender authorization afterwards do
// not depend on the mechanism a client picks.
func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.Auth == nil || (mech != sasl.Plain && mech != sasl.Login) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	if ss.tc != nil {
		if max := ss.s.opts.MaxAuthFailuresPerIP; max > 0 && ss.s.authFails.count(ss.tc.ip, time.Now()) >= max {
			// Locked out: no password is checked, so guessing from
			// this address gains nothing until the lockout expires.
			ss.log.Warn("auth refused: address locked out after failures")
			return nil, replyAuthLocked
		}
	}
	if mech == sasl.Login {
		return newLoginServer(ss.checkPassword), nil
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			if ss.knownUser(username) {
				ss.log.Info("auth refused: authorization identity differs", "user", username)
			} else {
				ss.log.Info("auth refused: authorization identity differs, unknown user")
			}
			return ss.authFailed()
		}
		return ss.checkPassword(username, password)
	}), nil
}

// checkPassword is where every mechanism ends: it asks the Authenticator,
// counts a failure, and on success makes username the session's identity.
func (ss *session) checkPassword(username, password string) error {
	if err := ss.s.opts.Auth.Authenticate(ss.ctx, username, password); err != nil {
		// Never the password; a real user's name helps an operator see
		// who is being guessed (see UserKnower).
		if ss.knownUser(username) {
			ss.log.Info("auth failed", "user", username, "err", err)
		} else {
			// err may quote the name too.
			ss.log.Info("auth failed: unknown user")
		}
		return ss.authFailed()
	}
	ss.mu.Lock()
	ss.authUser = username
	ss.mu.Unlock()
	ss.ident.user.Store(&username)
	ss.log.Info("authenticated", "user", username)
	return nil
}

func (ss *session) knownUser(username string) bool {
	k, ok := ss.s.opts.Auth.(UserKnower)
	return ok && k.KnownUser(username)
}

// authFailed records a failed AUTH, holds the reply for the delay, and
// ends the connection after too many failures on it.
func (ss *session) authFailed() error {
	if ss.tc == nil {
		return smtp.ErrAuthFailed
	}
	n := ss.s.authFails.fail(ss.tc.ip, time.Now())
	if d := ss.s.opts.authDelay(n); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ss.ctx.Done():
			t.Stop()
		}
	}
	if max := ss.s.opts.MaxAuthFailures; max > 0 && ss.tc.authFails.Add(1) >= int64(max) {
		ss.log.Warn("connection closed: too many failed authentication attempts")
		// go-smtp's 535 then goes nowhere; the client reads the 421.
		ss.tc.abort(replyTooManyAuth)
	}
	return smtp.ErrAuthFailed
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.s.opts.RequireAuth && ss.authUser == "" {
		return ss.fail(StageMail, "sender refused", fmt.Errorf("failed to accept sender %q: %w", from, ErrAuthRequired))
	}
	if from != "" {
		if err := checkMailbox(from); err != nil {
			return ss.fail(StageMail, "sender refused", err)
		}
		from = canonicalAddress(from)
	}
	if opts != nil && opts.Size > ss.s.opts.MaxMessageBytes {
		return ss.fail(StageMail, "sender refused", fmt.Errorf("failed to accept declared size %d: %w", opts.Size, ErrMessageTooBig))
	}
	if err := ss.s.policy.CheckSender(ss.ctx, from, ss.authUser); err != nil {
		err = fmt.Errorf("failed to check sender %q: %w", from, err)
		if !ss.deferSender(err) {
			return ss.fail(StageMail, "sender refused", err, "from", from)
		}
		ss.log.Info("sender left to the posting rules of lists", "from", from, "err", err)
	}
	ss.hasFrom = true
	ss.mailFrom = from
	if ss.tc != nil {
		ss.tc.inTxn.Store(true)
		ss.tc.commands.Store(0)
	}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if err := checkMailbox(to); err != nil {
		return ss.fail(StageRcpt, "recipient refused", err)
	}
	to = canonicalAddress(to)
	if ss.seen[to] {
		// Already accepted in this transaction: say yes again, store once.
		return nil
	}
	// go-smtp enforces the limit too, but counts duplicates; this keeps the
	// reply (and the log line) ours.
	if len(ss.rcpts) >= ss.s.opts.MaxRecipients {
		return ss.fail(StageRcpt, "recipient refused", fmt.Errorf("failed to add recipient %q: %w", to, ErrTooManyRecipients))
	}
	if err := ss.checkListRcpt(to); err != nil {
		return ss.fail(StageRcpt, "recipient refused", err, "rcpt", to)
	}
	if err := ss.s.policy.CheckRecipient(ss.ctx, to); err != nil {
		// The log names only this recipient; the reply names none.
		return ss.fail(StageRcpt, "recipient refused", fmt.Errorf("failed to check recipient %q: %w", to, err), "rcpt", to)
	}
	if ss.seen == nil {
		ss.seen = make(map[string]bool)
	}
	ss.seen[to] = true
	ss.rcpts = append(ss.rcpts, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	start := time.Now()
	ss.mu.Lock()
	env := queue.Envelope{
		MailFrom:   ss.mailFrom,
		RcptTo:     append([]string(nil), ss.rcpts...),
		ClientAddr: ss.conn.Conn().RemoteAddr().String(),
		Helo:       ss.conn.Hostname(),
		AuthUser:   ss.authUser,
		ReceivedAt: start.UTC(),
	}
	hasFrom := ss.hasFrom
	ss.mu.Unlock()
	logAttrs := []any{"from", env.MailFrom, "rcpts", len(env.RcptTo)}
	if !hasFrom || len(env.RcptTo) == 0 {
		// go-smtp checks this; a session that disagrees must not spool.
		return ss.fail(StageData, "message refused", errors.New("failed to accept data: no transaction"))
	}
	opts := &ss.s.opts
	dataDeadline := start.Add(opts.DataTimeout)
	defer func() {
		// go-smtp drains the rest of a refused message itself, under
		// whatever read deadline is set: give it the rest of the DATA
		// budget, not one idle interval, or a timeout would leave the
		// remaining body lines to be read as commands.
		_ = ss.conn.Conn().SetReadDeadline(dataDeadline)
	}()
	limit := &limitReader{
		r: smime.NewNormalizer(&deadlineReader{
			r:     r,
			conn:  ss.conn.Conn(),
			idle:  opts.ReadTimeout,
			limit: dataDeadline,
		}, opts.limits()),
		max: opts.MaxMessageBytes,
	}
	br := bodyReaders.Get().(*bufio.Reader)
	br.Reset(limit)
	defer func() {
		br.Reset(nil)
		bodyReaders.Put(br)
	}()

	raw, h, err := readHeader(br, opts.limits())
	if err != nil {
		if limit.err != nil {
			err = frontError(limit.err)
			ss.dropOnTimeout(err)
		}
		return ss.fail(StageData, "message refused", err, logAttrs...)
	}
	if err := ss.checkHeaderSenders(h, env); err != nil {
		return ss.fail(StageData, "message refused", err, logAttrs...)
	}

	guard := newMIMEGuard(br, h, opts.MaxMIMEDepth, opts.MaxMIMEParts)
	defer guard.Close()
	counted := &countingReader{r: io.MultiReader(bytes.NewReader(raw), guard)}
	id, err := ss.s.spool.Accept(ss.ctx, env, counted)
	if serr := guard.structureErr(); serr != nil {
		err = serr
	}
	if limit.err != nil {
		// The client's stream failed or overran the limit; whatever
		// Accept made of it, that is the cause to report.
		err = frontError(limit.err)
		ss.dropOnTimeout(err)
	}
	if err != nil {
		return ss.fail(StageData, "message refused", fmt.Errorf("failed to spool message: %w", err), logAttrs...)
	}
	ss.log.Info("message received", "id", id, "from", env.MailFrom, "rcpts", len(env.RcptTo),
		"size", counted.n, "auth", env.AuthUser, "duration", time.Since(start))
	return &smtp.SMTPError{
		Code:         250,
		EnhancedCode: smtp.EnhancedCode{2, 0, 0},
		Message:      "OK queued as " + id,
	}
}

// dropOnTimeout ends the connection when DATA timed out. go-smtp would
// otherwise reply and go on reading commands from wherever the stream
// stopped, so the rest of a stalled body would be taken as SMTP commands.
// RFC 5321 section 4.5.3.2: a server that times out closes the connection.
func (ss *session) dropOnTimeout(err error) {
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		return
	}
	c := ss.conn.Conn()
	_ = c.SetWriteDeadline(time.Now().Add(ss.s.opts.WriteTimeout))
	// go-smtp flushes after every reply, so nothing of its own is buffered.
	_, _ = io.WriteString(c, "421 4.4.2 timeout during DATA, closing connection\r\n")
	c.Close()
}

// checkHeaderSenders refuses a header whose originators the client may not
// use. Every address of every From, Sender, Resent-From and Resent-Sender
// field (each instance) is asked of the policy: those are what the signature
// vouches for, so a client allowed one envelope sender must not get another
// identity signed. A post only to lists is signed by the lists, so there the
// list's posting rule is asked about each of them instead. A second instance
// of a field RFC 5322 allows once is refused first: which one a reader shows
// is anyone's guess.
func (ss *session) checkHeaderSenders(h textproto.Header, env queue.Envelope) error {
	if err := split.CheckFields(h); err != nil {
		return fmt.Errorf("%w: %w", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: err.Error()}, err)
	}
	origs, err := split.Originators(h)
	if err != nil {
		var ae *split.AddressError
		field := "originator"
		if errors.As(err, &ae) {
			field = ae.Field
		}
		return &messageError{text: "malformed " + field + " header", err: err}
	}
	if strings.TrimSpace(h.Get("From")) == "" {
		return &messageError{text: "message has no From header"}
	}
	if err := ss.checkHeaderPlan(h, env); err != nil {
		return err
	}
	lp, _ := ss.s.policy.(ListPolicy)
	lists := ss.allLists(env.RcptTo)
	for _, a := range origs {
		addr := canonicalAddress(a)
		if !lists {
			if err := ss.s.policy.CheckSender(ss.ctx, addr, env.AuthUser); err != nil {
				return fmt.Errorf("failed to check header sender %q: %w", addr, err)
			}
			continue
		}
		for _, list := range env.RcptTo {
			if err := lp.CheckPoster(ss.ctx, list, addr); err != nil {
				return fmt.Errorf("failed to check header sender %q as poster to list %q: %w", addr, list, err)
			}
		}
	}
	return nil
}

// checkHeaderPlan refuses at the end of DATA what split would refuse when
// the message is sealed: a header field naming a hidden recipient inside
// the content every package shares, or an address field that does not
// parse. Lists plan their own packages, so their addresses are left out.
func (ss *session) checkHeaderPlan(h textproto.Header, env queue.Envelope) error {
	in := split.Input{Header: h, MailFrom: env.MailFrom, Policy: split.Policy{MissingCert: split.Drop}}
	lp, _ := ss.s.policy.(ListPolicy)
	for _, r := range env.RcptTo {
		if lp == nil || !lp.IsList(r) {
			in.RcptTo = append(in.RcptTo, r)
		}
	}
	if len(in.RcptTo) == 0 {
		return nil
	}
	_, err := split.Make(in)
	var fe *split.FieldError
	var ae *split.AddressError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &fe):
		return fmt.Errorf("%w: %w", &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: fe.Error()}, err)
	case errors.As(err, &ae):
		return &messageError{text: "malformed " + ae.Field + " header", err: err}
	}
	return &messageError{text: "message header cannot be planned", err: err}
}

func (ss *session) Reset() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.hasFrom = false
	ss.mailFrom = ""
	ss.rcpts = nil
	ss.seen = nil
	ss.senderErr = nil
	if ss.tc != nil {
		ss.tc.inTxn.Store(false)
	}
}

func (ss *session) Logout() error {
	if ss.tc != nil {
		// STARTTLS ends this session: until the next EHLO there is no
		// TLS-aware way to say a last reply, so the limits just close.
		ss.tc.onLimit.Store(nil)
	}
	ss.cancel()
	return nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
