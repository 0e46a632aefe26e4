package queue

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	phaseReceived = "received"
	phaseSealed   = "sealed"

	rcptPending   = "pending"
	rcptDelivered = "delivered"
	rcptFailed    = "failed"

	// msgMagic starts every message file so a foreign or future format is
	// recognised instead of misread.
	msgMagic = "appliance-spool 1\n"
)

// record is the durable state of one message (state/ID.json).
type record struct {
	ID          string       `json:"id"`
	Phase       string       `json:"phase"`
	Envelope    Envelope     `json:"envelope"`
	Attempts    int          `json:"attempts,omitempty"` // sealing attempts that failed
	NextAttempt time.Time    `json:"next_attempt,omitzero"`
	LastError   string       `json:"last_error,omitempty"`
	Packages    []*pkgRecord `json:"packages,omitempty"`

	gone bool // removed from disk (finished)
}

type pkgRecord struct {
	N           int           `json:"n"` // pkg/ID.N
	MailFrom    string        `json:"mail_from"`
	DSN         bool          `json:"dsn,omitempty"`
	Rcpts       []*rcptRecord `json:"rcpts"`
	Attempts    int           `json:"attempts,omitempty"`
	NextAttempt time.Time     `json:"next_attempt,omitzero"`
	LastError   string        `json:"last_error,omitempty"`
	ExpiresAt   time.Time     `json:"expires_at"`
}

type rcptRecord struct {
	Addr   string `json:"addr"`
	State  string `json:"state"`
	Status string `json:"status,omitempty"` // enhanced status for a DSN
	Diag   string `json:"diag,omitempty"`   // Diagnostic-Code value
}

func (p *pkgRecord) final() bool {
	for _, r := range p.Rcpts {
		if r.State == rcptPending {
			return false
		}
	}
	return true
}

func (p *pkgRecord) pending() []string {
	var out []string
	for _, r := range p.Rcpts {
		if r.State == rcptPending {
			out = append(out, r.Addr)
		}
	}
	return out
}

func (r *record) finished() bool {
	if r.Phase != phaseSealed {
		return false
	}
	for _, p := range r.Packages {
		if !p.final() {
			return false
		}
	}
	return true
}

// nextDue is when the message next needs a worker.
func (r *record) nextDue() time.Time {
	if r.Phase == phaseReceived {
		return r.NextAttempt
	}
	var due time.Time
	for _, p := range r.Packages {
		if !p.final() && (due.IsZero() || p.NextAttempt.Before(due)) {
			due = p.NextAttempt
		}
	}
	return due
}

type spool struct {
	dir, tmp, msg, state, pkg string

	msgSync, stateSync *groupSync
	lock               *os.File
}

// ErrLocked means another queue (another daemon) has the spool open; two
// workers on one spool would deliver everything twice.
var ErrLocked = errors.New("spool in use by another process")

// lockSpool takes an exclusive flock on DIR/lock. The kernel drops it when
// the process dies, so a crash leaves no stale lock.
func (s *spool) lockSpool() error {
	f, err := os.OpenFile(filepath.Join(s.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("failed to open spool lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("failed to lock spool %q: %w", s.dir, ErrLocked)
		}
		return fmt.Errorf("failed to lock spool %q: %w", s.dir, err)
	}
	s.lock = f
	return nil
}

func (s *spool) unlock() {
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
}

// groupSync shares one directory fsync among everyone who renamed into the
// directory before it started (group commit): concurrent writers wait for
// one fsync instead of queueing for one each. Each caller leads at most its
// own batch, so no caller's latency grows with the load of others.
type groupSync struct {
	dir     string
	mu      sync.Mutex
	cond    *sync.Cond
	leading bool       // an fsync is running
	next    *syncBatch // callers waiting for the next fsync
}

type syncBatch struct {
	done bool
	err  error
}

func newGroupSync(dir string) *groupSync {
	g := &groupSync{dir: dir}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// sync returns once an fsync of the directory that started after the call
// has finished.
func (g *groupSync) sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	b := g.next
	if b == nil {
		b = &syncBatch{}
		g.next = b
	}
	for g.leading && !b.done {
		g.cond.Wait()
	}
	if b.done {
		return b.err
	}
	// Lead this batch; later callers form the next one.
	g.leading = true
	g.next = nil
	g.mu.Unlock()
	err := syncDir(g.dir)
	g.mu.Lock()
	b.done, b.err = true, err
	g.leading = false
	g.cond.Broadcast()
	return err
}

func openSpool(dir string) (*spool, error) {
	s := &spool{
		dir:   dir,
		tmp:   filepath.Join(dir, "tmp"),
		msg:   filepath.Join(dir, "msg"),
		state: filepath.Join(dir, "state"),
		pkg:   filepath.Join(dir, "pkg"),
	}
	for _, d := range []string{s.tmp, s.msg, s.state, s.pkg} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("failed to create spool directory %q: %w", d, err)
		}
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	s.msgSync = newGroupSync(s.msg)
	s.stateSync = newGroupSync(s.state)
	if err := s.lockSpool(); err != nil {
		return nil, err
	}
	return s, nil
}

// newID is time-ordered (fixed-width hex nanoseconds) and unique (random
// suffix), and safe as a file name.
func newID(now time.Time) string {
	var b [5]byte
	rand.Read(b[:])
	return fmt.Sprintf("%016x%s", uint64(now.UnixNano()), hex.EncodeToString(b[:]))
}

func validID(id string) bool {
	if len(id) != 26 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("failed to open directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory %q: %w", dir, err)
	}
	return nil
}

func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("failed to stat file system of %q: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// errWriter remembers write errors so they can be told apart from errors
// reading the client's body.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}

func diskErr(op string, err error) error {
	return fmt.Errorf("failed to %s: %w: %w", op, ErrSpoolUnavailable, err)
}

// commit makes a fully written temp file the file at dst and the rename
// durable.
func (s *spool) commit(f *os.File, dst string) error {
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return diskErr("sync spool file", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return diskErr("close spool file", err)
	}
	if err := os.Rename(f.Name(), dst); err != nil {
		os.Remove(f.Name())
		return diskErr("rename spool file", err)
	}
	return nil
}

func (s *spool) msgPath(id string) string   { return filepath.Join(s.msg, id) }
func (s *spool) statePath(id string) string { return filepath.Join(s.state, id+".json") }
func (s *spool) pkgPath(id string, n int) string {
	return filepath.Join(s.pkg, id+"."+strconv.Itoa(n))
}

// writeMessage stores envelope and body as msg/ID, durably.
func (s *spool) writeMessage(ctx context.Context, id string, env Envelope, body io.Reader, limit int64) error {
	hdr, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("failed to encode envelope: %w", err)
	}
	f, err := os.CreateTemp(s.tmp, id+".*.tmp")
	if err != nil {
		return diskErr("create spool file", err)
	}
	abort := func(err error) error {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	ew := &errWriter{w: f}
	bw := bufio.NewWriterSize(ew, 64<<10)
	bw.WriteString(msgMagic)
	bw.Write(hdr)
	bw.WriteByte('\n')
	r := body
	if limit > 0 {
		r = io.LimitReader(body, limit+1)
	}
	n, err := io.Copy(bw, r)
	if err == nil {
		err = bw.Flush()
	}
	switch {
	case ew.err != nil:
		return abort(diskErr("write spool file", ew.err))
	case err != nil:
		return abort(fmt.Errorf("failed to read message body: %w", err))
	case limit > 0 && n > limit:
		return abort(fmt.Errorf("failed to accept message: %w: more than %d bytes", ErrMessageTooBig, limit))
	case ctx.Err() != nil:
		return abort(fmt.Errorf("failed to accept message: %w", ctx.Err()))
	}
	if err := s.commit(f, s.msgPath(id)); err != nil {
		return err
	}
	if err := s.msgSync.sync(); err != nil {
		return diskErr("sync spool", err)
	}
	return nil
}

// openMessage returns the envelope of msg/ID and the file positioned at the
// body (with a buffered reader that owns the position).
func (s *spool) openMessage(id string) (Envelope, *os.File, *bufio.Reader, error) {
	f, err := os.Open(s.msgPath(id))
	if err != nil {
		return Envelope{}, nil, nil, fmt.Errorf("failed to open spooled message %q: %w", id, err)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	env, err := readHeader(br)
	if err != nil {
		f.Close()
		return Envelope{}, nil, nil, fmt.Errorf("failed to read spooled message %q: %w", id, err)
	}
	return env, f, br, nil
}

// ErrBadSpoolFile is wrapped by errors about spool files that cannot be
// parsed.
var ErrBadSpoolFile = errors.New("bad spool file")

func readHeader(br *bufio.Reader) (Envelope, error) {
	magic, err := br.ReadString('\n')
	if err != nil || magic != msgMagic {
		return Envelope{}, fmt.Errorf("%w: missing header %q", ErrBadSpoolFile, strings.TrimSpace(msgMagic))
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return Envelope{}, fmt.Errorf("%w: truncated envelope", ErrBadSpoolFile)
	}
	var env Envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return Envelope{}, fmt.Errorf("%w: envelope: %w", ErrBadSpoolFile, err)
	}
	if len(env.RcptTo) == 0 {
		return Envelope{}, fmt.Errorf("%w: envelope without recipients", ErrBadSpoolFile)
	}
	return env, nil
}

// writePackage stores one package body as pkg/ID.N; the caller syncs the
// directory once for all packages of a commit.
func (s *spool) writePackage(id string, n int, body io.WriterTo) error {
	f, err := os.CreateTemp(s.tmp, id+".*.tmp")
	if err != nil {
		return diskErr("create package file", err)
	}
	ew := &errWriter{w: f}
	bw := bufio.NewWriterSize(ew, 64<<10)
	_, err = body.WriteTo(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		if ew.err != nil {
			return diskErr("write package file", ew.err)
		}
		return fmt.Errorf("failed to write package %d of %q: %w", n, id, err)
	}
	return s.commit(f, s.pkgPath(id, n))
}

// writeState replaces state/ID.json atomically and durably: the commit point
// of every transition.
func (s *spool) writeState(rec *record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("failed to encode state of %q: %w", rec.ID, err)
	}
	f, err := os.CreateTemp(s.tmp, rec.ID+".*.tmp")
	if err != nil {
		return diskErr("create state file", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return diskErr("write state file", err)
	}
	if err := s.commit(f, s.statePath(rec.ID)); err != nil {
		return err
	}
	return s.stateSync.sync()
}

// dropMessage removes msg/ID once the state no longer needs it, durably,
// because a message file without a state would be sealed (and sent) again.
func (s *spool) dropMessage(id string) error {
	if err := os.Remove(s.msgPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove spooled message %q: %w", id, err)
	}
	return s.msgSync.sync()
}

// remove deletes a finished message: the message file durably first, then
// the state, whose durable removal is the commit of "finished" (the state
// on disk may still list pending recipients: it would send again if it came
// back), then the packages. A crash in between leaves orphan packages,
// removed on Open.
func (s *spool) remove(rec *record) error {
	if rec.gone {
		return nil
	}
	err := os.Remove(s.msgPath(rec.ID))
	switch {
	case err == nil:
		if err := s.msgSync.sync(); err != nil {
			return err
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("failed to remove spooled message %q: %w", rec.ID, err)
	}
	if err := os.Remove(s.statePath(rec.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("failed to remove state of %q: %w", rec.ID, err)
	}
	if err := s.stateSync.sync(); err != nil {
		return err
	}
	rec.gone = true
	for _, p := range rec.Packages {
		if err := os.Remove(s.pkgPath(rec.ID, p.N)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("failed to remove package %d of %q: %w", p.N, rec.ID, err)
		}
	}
	return nil
}

// recover reads the spool after a start: temp files go (never
// acknowledged), states are loaded, messages without a state become
// received records, and package files no state names are removed.
func (s *spool) recover(log *slog.Logger) ([]*record, error) {
	tmps, err := os.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.tmp, err)
	}
	for _, t := range tmps {
		if err := os.Remove(filepath.Join(s.tmp, t.Name())); err != nil {
			return nil, fmt.Errorf("failed to remove temp file %q: %w", t.Name(), err)
		}
		log.Info("removed unfinished spool file", "file", t.Name())
	}

	recs := make(map[string]*record)
	states, err := os.ReadDir(s.state)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.state, err)
	}
	for _, st := range states {
		id, ok := strings.CutSuffix(st.Name(), ".json")
		if !ok || !validID(id) {
			log.Warn("ignoring unknown file in spool", "file", st.Name())
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.state, st.Name()))
		if err != nil {
			return nil, fmt.Errorf("failed to read state %q: %w", st.Name(), err)
		}
		rec := new(record)
		if err := json.Unmarshal(data, rec); err != nil || rec.ID != id {
			// Refusing to start beats silently dropping accepted mail.
			return nil, fmt.Errorf("failed to load state %q: %w", st.Name(), ErrBadSpoolFile)
		}
		recs[id] = rec
	}

	msgs, err := os.ReadDir(s.msg)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.msg, err)
	}
	have := make(map[string]bool)
	for _, m := range msgs {
		id := m.Name()
		if !validID(id) {
			log.Warn("ignoring unknown file in spool", "file", id)
			continue
		}
		have[id] = true
		if rec, ok := recs[id]; ok {
			if rec.Phase == phaseSealed {
				// Crashed between sealing and removing the message.
				if err := s.dropMessage(id); err != nil {
					return nil, err
				}
			}
			continue
		}
		env, f, _, err := s.openMessage(id)
		if err != nil {
			return nil, err
		}
		f.Close()
		recs[id] = &record{ID: id, Phase: phaseReceived, Envelope: env}
	}
	for id, rec := range recs {
		if rec.Phase == phaseReceived && !have[id] {
			return nil, fmt.Errorf("failed to recover %q: %w: state without message", id, ErrBadSpoolFile)
		}
	}

	pkgs, err := os.ReadDir(s.pkg)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.pkg, err)
	}
	for _, p := range pkgs {
		id, nstr, _ := strings.Cut(p.Name(), ".")
		n, nerr := strconv.Atoi(nstr)
		if rec, ok := recs[id]; ok && nerr == nil && rec.hasPackage(n) {
			continue
		}
		// Written by a seal or a DSN that never committed.
		if err := os.Remove(filepath.Join(s.pkg, p.Name())); err != nil {
			return nil, fmt.Errorf("failed to remove orphan package %q: %w", p.Name(), err)
		}
	}

	out := make([]*record, 0, len(recs))
	for _, rec := range recs {
		if rec.Phase == phaseSealed {
			for _, p := range rec.Packages {
				if p.final() {
					continue
				}
				if _, err := os.Stat(s.pkgPath(rec.ID, p.N)); err != nil {
					return nil, fmt.Errorf("failed to recover %q: package %d: %w: %w", rec.ID, p.N, ErrBadSpoolFile, err)
				}
			}
		}
		out = append(out, rec)
	}
	return out, nil
}

func (r *record) hasPackage(n int) bool {
	if r.Phase != phaseSealed {
		return false
	}
	for _, p := range r.Packages {
		if p.N == n {
			return true
		}
	}
	return false
}
