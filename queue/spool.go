package queue

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	msgMagic = "appliance-spool 4\n"
	// msgMagicV3 is format 3: format 4, but a file ends where its last commit
	// does (a recycled file was cut to the new message's length at Accept),
	// so a state of another message in it is damage. A format 4 file may go
	// on with what the message that used it before left, and its log ends at
	// the first state of another message. Read as well. (Format 4 has its own
	// line so that a version that knows only format 3 refuses the file as of
	// a format it does not know, not as damaged.)
	msgMagicV3 = "appliance-spool 3\n"
	// msgMagicV2 is format 3 without shared package parts: read as well.
	// (Format 3 has its own line so that a version that knows only format 2,
	// which would deliver a package's head without its shared part, refuses
	// the file instead.)
	msgMagicV2 = "appliance-spool 2\n"
	// msgMagicV1 is the format with separate state/ and pkg/ files, which
	// this version refuses rather than misreads.
	msgMagicV1 = "appliance-spool 1\n"
	// bodyLenLine is the second line: the body's length in 16 hex digits,
	// written as zeros first and filled in once the body is in.
	bodyLenLine = 17

	// A frame is frameMagic, a kind byte, the payload length (uint64, big
	// endian) and a CRC-32C of those 13 bytes, then the payload; a state
	// frame ends with a CRC-32C of its payload.
	frameMagic     = "\x00SF2"
	frameHeaderLen = 17
	kindPackage    = 'P'
	kindState      = 'S'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is the durable state of one message: the last state frame of msg/ID.
type record struct {
	// ID stays the first field: stateID reads a state's ID from the start of
	// its JSON (TestPowerLoss fails otherwise).
	ID          string       `json:"id"`
	Phase       string       `json:"phase"`
	Envelope    Envelope     `json:"-"`                  // in the file's header
	Attempts    int          `json:"attempts,omitempty"` // sealing attempts that failed
	NextAttempt time.Time    `json:"next_attempt,omitzero"`
	LastError   string       `json:"last_error,omitempty"`
	Packages    []*pkgRecord `json:"packages,omitempty"`

	gone bool       // removed from disk (finished)
	file *fileState // shared by copies of the record, as the file is
	// unwritten are packages in Packages whose bytes are not in the file
	// yet; the next commit writes them before the state that names them.
	unwritten []newPackage
}

// fileState is where things are in msg/ID.
type fileState struct {
	body, bodyLen int64 // offset and length of the message body
	end           int64 // just past the last committed frame: where the next one goes
	// dirty means a failed append may have left bytes after end; they are
	// cut off before the next one.
	dirty bool
}

type pkgRecord struct {
	N   int    `json:"n"`
	Off int64  `json:"off"` // the package's bytes in msg/ID
	Len int64  `json:"len"`
	CRC uint32 `json:"crc"` // CRC-32C of the bytes, checked on Open for the last commit
	// Shared, when set, is a frame of the same file holding the rest of
	// the package, written once for every package that shares it: the
	// package is its own bytes (Off, Len) followed by the shared ones.
	Shared *segment `json:"shared,omitempty"`
	// Mode and Profile say what the package is (Package.Mode, .Profile).
	Mode        string        `json:"mode,omitempty"`
	Profile     string        `json:"profile,omitempty"`
	MailFrom    string        `json:"mail_from"`
	DSN         bool          `json:"dsn,omitempty"`
	Rcpts       []*rcptRecord `json:"rcpts"`
	Attempts    int           `json:"attempts,omitempty"`
	NextAttempt time.Time     `json:"next_attempt,omitzero"`
	LastError   string        `json:"last_error,omitempty"`
	ExpiresAt   time.Time     `json:"expires_at"`
	// Wait holds the package back (Package.Wait); records written before it existed have none.
	Wait   *Wait `json:"wait,omitempty"`
	Silent bool  `json:"silent,omitempty"` // Package.Silent
}

// segment is bytes of a message file shared by several packages.
type segment struct {
	Off int64  `json:"off"`
	Len int64  `json:"len"`
	CRC uint32 `json:"crc"`
	// Wire: the bytes were found, as they were written, in SMTP DATA form as they stand
	// (WireBody), so delivery may send them without stuffing. Records written before it
	// existed have none: their parts are stuffed.
	Wire bool `json:"wire,omitempty"`
}

// newPackage is a package to be written by the next commit.
type newPackage struct {
	rec  *pkgRecord
	body io.WriterTo
	// shared, if not nil, follows body; packages of one commit with the
	// same shared value get one frame of it (SharedBody).
	shared io.WriterTo
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
		if !p.final() && !r.held(p) && (due.IsZero() || p.NextAttempt.Before(due)) {
			due = p.NextAttempt
		}
	}
	return due
}

type spool struct {
	dir, tmp, msg string
	fs            fileSystem
	// skipSync is a sync the spool leaves out, for tests proving that the
	// crash tests notice; syncNone in the appliance.
	skipSync syncPoint

	msgSync *groupSync
	lock    *os.File

	// free are finished message files moved to tmp/ for the next Accepts
	// to overwrite. On ext4 without a journal, creating a file searches past
	// every recently deleted inode, so a spool that creates and deletes
	// hundreds of files a second pays more for the create than for the
	// write; overwriting allocates nothing.
	freeMu sync.Mutex
	free   []string
	// keepFree is the free space below which files are deleted, not kept:
	// kept files must never be what makes the spool full.
	keepFree uint64
}

// recycleFiles is off only in benchmarks that measure what it saves.
var recycleFiles = true

const (
	freePrefix  = "free-"
	maxFree     = 64      // files kept for reuse
	maxFreeSize = 1 << 20 // larger files are deleted: their create is cheap next to their bytes
)

// dropFree deletes the kept files, for when space is short.
func (s *spool) dropFree() {
	s.freeMu.Lock()
	free := s.free
	s.free = nil
	s.freeMu.Unlock()
	for _, name := range free {
		s.fs.Remove(name)
	}
}

// takeFree opens a recycled file for writing from its start, or returns nil.
func (s *spool) takeFree() spoolFile {
	for {
		s.freeMu.Lock()
		n := len(s.free)
		if n == 0 {
			s.freeMu.Unlock()
			return nil
		}
		name := s.free[n-1]
		s.free = s.free[:n-1]
		s.freeMu.Unlock()
		f, err := s.fs.OpenFile(name, os.O_RDWR)
		if err == nil {
			return f
		}
		s.fs.Remove(name)
	}
}

// recycle moves a finished message file to tmp/ for reuse instead of
// deleting it, and reports whether it did. The caller fsyncs msg/.
func (s *spool) recycle(rec *record) bool {
	if !recycleFiles || rec.file == nil || rec.file.end > maxFreeSize {
		return false
	}
	s.freeMu.Lock()
	full := len(s.free) >= maxFree
	s.freeMu.Unlock()
	if full {
		return false
	}
	if avail, err := freeBytes(s.dir); err != nil || avail < s.keepFree {
		return false
	}
	name := filepath.Join(s.tmp, freePrefix+rec.ID)
	if err := s.fs.Rename(s.msgPath(rec.ID), name); err != nil {
		return false
	}
	s.freeMu.Lock()
	s.free = append(s.free, name)
	s.freeMu.Unlock()
	return true
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
	syncDir func(dir string) error
	mu      sync.Mutex
	cond    *sync.Cond
	leading bool       // an fsync is running
	next    *syncBatch // callers waiting for the next fsync
}

type syncBatch struct {
	done bool
	err  error
}

func newGroupSync(dir string, syncDir func(string) error) *groupSync {
	g := &groupSync{dir: dir, syncDir: syncDir}
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
	err := g.syncDir(g.dir)
	g.mu.Lock()
	b.done, b.err = true, err
	g.leading = false
	g.cond.Broadcast()
	return err
}

// errFormatV1 explains a spool this version cannot read.
var errFormatV1 = errors.New("spool format 1 (state/ and pkg/ files); drain it with the version that wrote it")

func openSpool(dir string, minFree uint64) (*spool, error) {
	return openSpoolFS(osFS{}, dir, minFree, syncNone)
}

// openSpoolFS opens the spool in dir on fsys, leaving out the sync skip.
func openSpoolFS(fsys fileSystem, dir string, minFree uint64, skip syncPoint) (*spool, error) {
	s := &spool{
		keepFree: max(2*minFree, 64<<20),
		dir:      dir,
		tmp:      filepath.Join(dir, "tmp"),
		msg:      filepath.Join(dir, "msg"),
		fs:       fsys,
		skipSync: skip,
	}
	for _, d := range []string{s.tmp, s.msg} {
		if err := fsys.MkdirAll(d); err != nil {
			return nil, fmt.Errorf("failed to create spool directory %q: %w", d, err)
		}
	}
	if skip != syncOpenDir {
		if err := fsys.SyncDir(dir); err != nil {
			return nil, err
		}
	}
	s.msgSync = newGroupSync(s.msg, fsys.SyncDir)
	if err := s.lockSpool(); err != nil {
		return nil, err
	}
	// Format 1 kept states and packages in files of their own: mail in
	// them would be invisible to this version, so it refuses to start.
	for _, old := range []string{"state", "pkg"} {
		if ents, err := fsys.ReadDir(filepath.Join(dir, old)); err == nil && len(ents) > 0 {
			s.unlock()
			return nil, fmt.Errorf("failed to open spool %q: %w: %w", dir, ErrBadSpoolFile, errFormatV1)
		}
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

// crcWriter computes the CRC-32C of what passes through.
type crcWriter struct {
	w   io.Writer
	crc uint32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc = crc32.Update(c.crc, castagnoli, p[:n])
	return n, err
}

// offsetWriter writes at an advancing offset; WriteAt, unlike an O_APPEND
// write, lets a frame header be filled in after its payload.
type offsetWriter struct {
	f   io.WriterAt
	off int64
}

func (w *offsetWriter) Write(p []byte) (int, error) {
	n, err := w.f.WriteAt(p, w.off)
	w.off += int64(n)
	return n, err
}

// bufPool keeps the 64 KB write buffers: one per Accept and per commit
// would otherwise be most of the garbage a small message makes.
var bufPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 64<<10) }}

func getBuf(w io.Writer) *bufio.Writer {
	bw := bufPool.Get().(*bufio.Writer)
	bw.Reset(w)
	return bw
}

func putBuf(bw *bufio.Writer) {
	bw.Reset(nil)
	bufPool.Put(bw)
}

func diskErr(op string, err error) error {
	return fmt.Errorf("failed to %s: %w: %w", op, ErrSpoolUnavailable, err)
}

func (s *spool) msgPath(id string) string { return filepath.Join(s.msg, id) }

// writeMessage stores envelope and body as msg/ID, durably: written in tmp/,
// fsync'd, renamed into msg/ and the directory fsync'd, so a file in msg/ is
// always whole.
func (s *spool) writeMessage(ctx context.Context, id string, env Envelope, body io.Reader, limit int64) (*fileState, error) {
	st, err := s.stageMessage(ctx, id, env, body, limit, 0)
	if err != nil {
		return nil, err
	}
	return st.commit(nil)
}

// envelopeRoom is the white space a staged file leaves after its envelope,
// so that what the check found (Envelope.Class) can be written into the
// envelope before the commit without moving the body. JSON ignores it.
const envelopeRoom = 64

// staged is a message written in tmp/, not yet synced nor in msg/.
type staged struct {
	s      *spool
	f      spoolFile
	id     string
	env    Envelope
	hdrLen int // the envelope line's length, its room and newline included
	bodyAt int64
	n      int64
}

// stageMessage writes envelope and body in tmp/ (room bytes of white space
// after the envelope). Nothing is synced: the file is the caller's to
// commit or discard, and Open removes it if neither happens.
func (s *spool) stageMessage(ctx context.Context, id string, env Envelope, body io.Reader, limit int64, room int) (*staged, error) {
	hdr, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("failed to encode envelope: %w", err)
	}
	f := s.takeFree()
	if f == nil {
		f, err = s.fs.CreateTemp(s.tmp, id+".*.tmp")
		if err != nil {
			return nil, diskErr("create spool file", err)
		}
	}
	st := &staged{s: s, f: f, id: id, env: env, hdrLen: len(hdr) + room + 1}
	abort := func(err error) (*staged, error) {
		st.discard(err)
		return nil, err
	}
	ew := &errWriter{w: f}
	bw := getBuf(ew)
	defer putBuf(bw)
	bw.WriteString(msgMagic)
	bw.WriteString("0000000000000000\n")
	bw.Write(hdr)
	for range room {
		bw.WriteByte(' ')
	}
	bw.WriteByte('\n')
	st.bodyAt = int64(len(msgMagic) + bodyLenLine + st.hdrLen)
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
	st.n = n
	if _, err := f.WriteAt(fmt.Appendf(nil, "%016x", n), int64(len(msgMagic))); err != nil {
		return abort(diskErr("write spool file", err))
	}
	// A recycled file keeps its length: what follows the new body is the old
	// message's bytes until commits write over them, and the log ends at the
	// first state of another message (format 4). Cutting the file here, and
	// growing it again commit by commit, cost a truncate and the file
	// system's block allocation for every message (bench/RESULTS.md).
	return st, nil
}

// body reads the staged message's body back.
func (st *staged) body() *io.SectionReader { return io.NewSectionReader(st.f, st.bodyAt, st.n) }

// discard removes the staged file.
func (st *staged) discard(err error) {
	st.f.Close()
	st.s.fs.Remove(st.f.Name())
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		st.s.dropFree()
	}
}

// commit writes env (when not nil: the staged envelope with what the check
// added, if it fits the room left for it) and makes the file durable: fsync,
// rename into msg/, directory fsync. The file is gone when it fails.
func (st *staged) commit(env *Envelope) (*fileState, error) {
	s, f := st.s, st.f
	if env != nil {
		hdr, err := json.Marshal(env)
		if err == nil && len(hdr) < st.hdrLen {
			line := append(hdr, bytes.Repeat([]byte{' '}, st.hdrLen-1-len(hdr))...)
			if _, err := f.WriteAt(line, int64(len(msgMagic)+bodyLenLine)); err != nil {
				st.discard(err)
				return nil, diskErr("write spool file", err)
			}
			st.env = *env
		}
	}
	if s.skipSync != syncAcceptFile {
		if err := f.Sync(); err != nil {
			st.discard(err)
			return nil, diskErr("sync spool file", err)
		}
	}
	if err := f.Close(); err != nil {
		s.fs.Remove(f.Name())
		return nil, diskErr("close spool file", err)
	}
	if err := s.fs.Rename(f.Name(), s.msgPath(st.id)); err != nil {
		s.fs.Remove(f.Name())
		return nil, diskErr("rename spool file", err)
	}
	if s.skipSync != syncAcceptDir {
		if err := s.msgSync.sync(); err != nil {
			return nil, diskErr("sync spool", err)
		}
	}
	return &fileState{body: st.bodyAt, bodyLen: st.n, end: st.bodyAt + st.n}, nil
}

// openBody returns the message body of rec; the caller closes the file.
func (s *spool) openBody(rec *record) (io.Closer, io.Reader, error) {
	f, err := s.fs.OpenFile(s.msgPath(rec.ID), os.O_RDONLY)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to open spooled message %q: %w", rec.ID, err)
	}
	return f, io.NewSectionReader(f, rec.file.body, rec.file.bodyLen), nil
}

// openPackage returns the bytes of package p of rec; the caller closes the
// file. A package with a shared part comes as a WireBody.
func (s *spool) openPackage(rec *record, p *pkgRecord) (io.Closer, io.Reader, error) {
	f, err := s.fs.OpenFile(s.msgPath(rec.ID), os.O_RDONLY)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to open package %d of %q: %w", p.N, rec.ID, err)
	}
	own := io.NewSectionReader(f, p.Off, p.Len)
	if p.Shared == nil {
		return f, own, nil
	}
	body := &packageBody{
		Reader: io.MultiReader(own, io.NewSectionReader(f, p.Shared.Off, p.Shared.Len)),
		head:   own, shared: p.Shared,
	}
	if of, ok := f.(osFile); ok {
		body.file = of.File
	}
	return f, body, nil
}

// ErrBadSpoolFile is wrapped by errors about spool files that cannot be
// parsed.
var ErrBadSpoolFile = errors.New("bad spool file")

// readHeader reads the envelope and the body's length, and returns where
// the body starts and whether the file may hold another message's bytes
// after its own (format 4).
func readHeader(br *bufio.Reader) (env Envelope, bodyAt, bodyLen int64, leftovers bool, err error) {
	magic, err := br.ReadString('\n')
	if err == nil && magic == msgMagicV1 {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: %w", ErrBadSpoolFile, errFormatV1)
	}
	if err != nil || (magic != msgMagic && magic != msgMagicV3 && magic != msgMagicV2) {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: missing header %q", ErrBadSpoolFile, strings.TrimSpace(msgMagic))
	}
	leftovers = magic == msgMagic
	lenLine, err := br.ReadString('\n')
	if err != nil || len(lenLine) != bodyLenLine {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: truncated header", ErrBadSpoolFile)
	}
	n, err := strconv.ParseUint(lenLine[:bodyLenLine-1], 16, 63)
	if err != nil {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: body length %q", ErrBadSpoolFile, strings.TrimSpace(lenLine))
	}
	line, err := br.ReadBytes('\n')
	if err != nil {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: truncated envelope", ErrBadSpoolFile)
	}
	if err := json.Unmarshal(line, &env); err != nil {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: envelope: %w", ErrBadSpoolFile, err)
	}
	if len(env.RcptTo) == 0 {
		return Envelope{}, 0, 0, false, fmt.Errorf("%w: envelope without recipients", ErrBadSpoolFile)
	}
	return env, int64(len(msgMagic) + bodyLenLine + len(line)), int64(n), leftovers, nil
}

func frameHeader(kind byte, n int64) []byte {
	h := make([]byte, frameHeaderLen)
	copy(h, frameMagic)
	h[4] = kind
	binary.BigEndian.PutUint64(h[5:13], uint64(n))
	binary.BigEndian.PutUint32(h[13:], crc32.Checksum(h[:13], castagnoli))
	return h
}

// parseFrameHeader returns the kind and payload length, or ok false for
// anything that is not a whole, valid frame header.
func parseFrameHeader(h []byte) (kind byte, n int64, ok bool) {
	if len(h) != frameHeaderLen || string(h[:4]) != frameMagic ||
		binary.BigEndian.Uint32(h[13:]) != crc32.Checksum(h[:13], castagnoli) {
		return 0, 0, false
	}
	kind, u := h[4], binary.BigEndian.Uint64(h[5:13])
	if (kind != kindPackage && kind != kindState) || u > 1<<62 {
		return 0, 0, false
	}
	return kind, int64(u), true
}

// stateFrame is a valid state frame found by scanFrames.
type stateFrame struct {
	payload []byte
	at, end int64 // where the frame starts and ends
}

// scanFrames reads the frames from start to size and returns the state
// frames that are whole and whose checksum holds, up to the first frame that
// is not (a commit that never finished: packages written before a crash, a
// torn state, zeros) or, when leftovers is set (format 4), up to the first
// state of a message other than id (the message that used a recycled file
// before: its frames follow the log until commits write over them). A state
// that does not say whose it is is returned, for decodeState to refuse.
func scanFrames(r io.ReaderAt, start, size int64, id string, leftovers bool) []stateFrame {
	var out []stateFrame
	h := make([]byte, frameHeaderLen)
	for pos := start; pos+frameHeaderLen <= size; {
		if _, err := r.ReadAt(h, pos); err != nil {
			break
		}
		kind, n, ok := parseFrameHeader(h)
		if !ok {
			break
		}
		next := pos + frameHeaderLen + n
		if kind == kindState {
			next += 4
		}
		if next > size || next < pos {
			break
		}
		if kind == kindState {
			body := make([]byte, n+4)
			if _, err := r.ReadAt(body, pos+frameHeaderLen); err != nil {
				break
			}
			if binary.BigEndian.Uint32(body[n:]) != crc32.Checksum(body[:n], castagnoli) {
				break
			}
			if whose, ok := stateID(body[:n]); leftovers && ok && whose != id {
				break
			}
			out = append(out, stateFrame{payload: body[:n], at: pos, end: next})
		}
		pos = next
	}
	return out
}

// stateID is the message ID a state payload begins with (record's first
// field, as json.Marshal writes it), without reading the rest of the
// payload, which for a message of many packages is long. ok is false for a
// payload that does not begin with one.
func stateID(payload []byte) (id string, ok bool) {
	const pre = `{"id":"`
	if len(payload) < len(pre)+27 || string(payload[:len(pre)]) != pre || payload[len(pre)+26] != '"' {
		return "", false
	}
	id = string(payload[len(pre) : len(pre)+26])
	return id, validID(id)
}

// commit appends the packages not yet written, makes them durable, then
// appends rec's state and makes it durable: the commit point of every
// transition. The state goes after the packages' fdatasync because one
// fdatasync orders nothing within it; a state that made it to disk names
// only bytes that are there.
func (s *spool) commit(rec *record) error {
	pc, err := s.prepareCommit(rec)
	if err != nil {
		return err
	}
	if err := pc.sync(); err != nil {
		return err
	}
	pc.done()
	return nil
}

// pendingCommit is a commit whose frames are written and not yet synced. Its three steps let
// a caller that guards rec with a lock hold the lock to write (prepareCommit reads rec) and to
// finish (done changes rec), and release it for the fdatasync (sync), so that others may change
// rec meanwhile; the next commit then writes their changes. Only one commit of a file may be
// pending at a time: the next one writes where this one ends.
type pendingCommit struct {
	s       *spool
	rec     *record
	f       spoolFile
	end     int64 // just past this commit's state frame
	written int   // how many of rec.unwritten this commit wrote
}

// prepareCommit writes rec's unwritten packages and its state (see commit) without syncing.
func (s *spool) prepareCommit(rec *record) (pc *pendingCommit, err error) {
	defer func() {
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			s.dropFree()
		}
	}()
	fs := rec.file
	f, err := s.fs.OpenFile(s.msgPath(rec.ID), os.O_RDWR)
	if err != nil {
		return nil, diskErr(fmt.Sprintf("open spooled message %q", rec.ID), err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	if fs.dirty {
		if err := f.Truncate(fs.end); err != nil {
			return nil, diskErr(fmt.Sprintf("truncate spooled message %q", rec.ID), err)
		}
		fs.dirty = false
	}
	// From here on a failure may leave a partial frame after fs.end.
	fs.dirty = true
	pos := fs.end
	if len(rec.unwritten) > 0 {
		ow := &offsetWriter{f: f, off: pos}
		ew := &errWriter{w: ow}
		bw := getBuf(ew)
		defer putBuf(bw)
		// writeFrame appends one payload frame and returns where its bytes are.
		// A shared part (wire set) is also checked for SMTP DATA form as it is written.
		writeFrame := func(body io.WriterTo, wire bool) (*segment, error) {
			// A zero header is no frame: until it is filled in after the
			// payload, a crash leaves nothing a scan would follow.
			bw.Write(make([]byte, frameHeaderLen))
			cw := &crcWriter{w: bw}
			var w io.Writer = cw
			var wc *wireCheck
			if wire {
				wc = &wireCheck{w: cw}
				w = wc
			}
			_, err := body.WriteTo(w)
			if err == nil {
				err = bw.Flush()
			}
			if err != nil {
				return nil, err
			}
			n := ow.off - pos - frameHeaderLen
			if _, err := f.WriteAt(frameHeader(kindPackage, n), pos); err != nil {
				ew.err = err
				return nil, err
			}
			seg := &segment{Off: pos + frameHeaderLen, Len: n, CRC: cw.crc, Wire: wc != nil && wc.ok() && wc.n == n}
			pos = ow.off
			return seg, nil
		}
		var shared map[io.WriterTo]*segment
		for _, p := range rec.unwritten {
			var sh *segment
			if p.shared != nil {
				if shared == nil {
					shared = map[io.WriterTo]*segment{}
				}
				if sh = shared[p.shared]; sh == nil {
					var err error
					if sh, err = writeFrame(once(p.shared), true); err != nil {
						if ew.err != nil {
							return nil, diskErr("write package", ew.err)
						}
						return nil, fmt.Errorf("failed to write package %d of %q: %w", p.rec.N, rec.ID, err)
					}
					shared[p.shared] = sh
				}
			}
			seg, err := writeFrame(p.body, false)
			if err != nil {
				if ew.err != nil {
					return nil, diskErr("write package", ew.err)
				}
				return nil, fmt.Errorf("failed to write package %d of %q: %w", p.rec.N, rec.ID, err)
			}
			p.rec.Off, p.rec.Len, p.rec.CRC, p.rec.Shared = seg.Off, seg.Len, seg.CRC, sh
		}
		// No fdatasync between the packages and the state that names them:
		// each package's checksum is in the state, and Open checks the
		// packages of a file's last commit, the only one a crash can tear.
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("failed to encode state of %q: %w", rec.ID, err)
	}
	frame := make([]byte, 0, frameHeaderLen+len(data)+4)
	frame = append(frame, frameHeader(kindState, int64(len(data)))...)
	frame = append(frame, data...)
	frame = binary.BigEndian.AppendUint32(frame, crc32.Checksum(data, castagnoli))
	if _, err := f.WriteAt(frame, pos); err != nil {
		return nil, diskErr("write state", err)
	}
	return &pendingCommit{s: s, rec: rec, f: f, end: pos + int64(len(frame)), written: len(rec.unwritten)}, nil
}

// streamer is a shared part that can also write itself without keeping what it writes
// (smime.Base64Tail.StreamTo: the base64 of a message's encrypted content, encoded a block at a
// time into the spool file instead of whole into memory first). The spool writes each shared
// part once, so it has no use for a copy kept for later writes.
type streamer interface {
	StreamTo(w io.Writer) (int64, error)
}

type streamOnce struct{ s streamer }

func (o streamOnce) WriteTo(w io.Writer) (int64, error) { return o.s.StreamTo(w) }

// once is how the spool writes the shared part body: by StreamTo when it has one.
func once(body io.WriterTo) io.WriterTo {
	if s, ok := body.(streamer); ok {
		return streamOnce{s}
	}
	return body
}

// commitSyncs counts commits' fdatasyncs, for a benchmark of how many a message costs.
var commitSyncs atomic.Int64

// sync makes the commit durable and closes the file. It reads and changes nothing of rec.
func (pc *pendingCommit) sync() (err error) {
	defer pc.f.Close()
	commitSyncs.Add(1)
	if pc.s.skipSync != syncCommit {
		if err := pc.f.Datasync(); err != nil {
			if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
				pc.s.dropFree()
			}
			return diskErr("sync state", err)
		}
	}
	return nil
}

// done records in rec that the commit is durable: the next one goes after it, and the packages
// it wrote are no longer unwritten (packages added since stay so).
func (pc *pendingCommit) done() {
	fs := pc.rec.file
	fs.end, fs.dirty = pc.end, false
	pc.rec.unwritten = pc.rec.unwritten[pc.written:]
	if len(pc.rec.unwritten) == 0 {
		pc.rec.unwritten = nil
	}
}

// remove deletes a finished message. Its durable removal is the commit of
// "finished": the last state in the file may still list pending recipients,
// and would send to them again if the file came back.
func (s *spool) remove(rec *record) error {
	if rec.gone {
		return nil
	}
	if !s.recycle(rec) {
		if err := s.fs.Remove(s.msgPath(rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("failed to remove spooled message %q: %w", rec.ID, err)
		}
	}
	if s.skipSync != syncRemoveDir {
		if err := s.msgSync.sync(); err != nil {
			return err
		}
	}
	rec.gone = true
	return nil
}

// recover reads the spool after a start: temp files go (never
// acknowledged), each message file gives its record (received if it has no
// state yet), and the unfinished tail of a file (a commit cut short) is cut
// off so later commits follow the last good one.
func (s *spool) recover(log *slog.Logger) ([]*record, error) {
	tmps, err := s.fs.ReadDir(s.tmp)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.tmp, err)
	}
	for _, t := range tmps {
		if err := s.fs.Remove(filepath.Join(s.tmp, t)); err != nil {
			return nil, fmt.Errorf("failed to remove temp file %q: %w", t, err)
		}
		if !strings.HasPrefix(t, freePrefix) {
			log.Info("removed unfinished spool file", "file", t)
		}
	}
	msgs, err := s.fs.ReadDir(s.msg)
	if err != nil {
		return nil, fmt.Errorf("failed to read spool directory %q: %w", s.msg, err)
	}
	out := make([]*record, 0, len(msgs))
	for _, id := range msgs {
		if !validID(id) {
			log.Warn("ignoring unknown file in spool", "file", id)
			continue
		}
		rec, cut, err := s.load(id)
		if err != nil {
			// Refusing to start beats silently dropping accepted mail.
			return nil, err
		}
		if cut > 0 {
			// A commit cut short, or (format 4) what the file held before.
			log.Info("cut spool file after its last commit", "id", id, "bytes", cut)
		}
		out = append(out, rec)
	}
	return out, nil
}

// load reads msg/ID and cuts off an unfinished tail, returning its length.
func (s *spool) load(id string) (*record, int64, error) {
	f, err := s.fs.OpenFile(s.msgPath(id), os.O_RDWR)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to open spooled message %q: %w", id, err)
	}
	defer f.Close()
	size, err := f.Size()
	if err != nil {
		return nil, 0, fmt.Errorf("failed to stat spooled message %q: %w", id, err)
	}
	rec, end, err := parseMessage(id, f, size)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to load spooled message %q: %w", id, err)
	}
	cut := size - end
	if cut > 0 {
		if err := f.Truncate(end); err != nil {
			return nil, 0, fmt.Errorf("failed to truncate spooled message %q: %w", id, err)
		}
		if s.skipSync == syncRecoverTrunc {
			return rec, cut, nil
		}
		if err := f.Datasync(); err != nil {
			return nil, 0, fmt.Errorf("failed to sync spooled message %q: %w", id, err)
		}
	}
	return rec, cut, nil
}

// parseMessage reads a message file of size bytes and returns its record
// and the end of its last committed frame.
func parseMessage(id string, r io.ReaderAt, size int64) (*record, int64, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 4096)
	env, bodyAt, bodyLen, leftovers, err := readHeader(br)
	if err != nil {
		return nil, 0, err
	}
	if bodyAt+bodyLen > size {
		return nil, 0, fmt.Errorf("%w: body of %d bytes in a file of %d", ErrBadSpoolFile, bodyLen, size)
	}
	fs := &fileState{body: bodyAt, bodyLen: bodyLen, end: bodyAt + bodyLen}
	states := scanFrames(r, bodyAt+bodyLen, size, id, leftovers)
	// The last state was written in one fdatasync with its new packages:
	// if one of them did not reach the disk whole, that commit never
	// happened and the one before it holds. Every earlier commit was
	// followed by another, which began only after its fdatasync returned.
	for i := len(states) - 1; i >= 0; i-- {
		prevEnd := fs.end
		if i > 0 {
			prevEnd = states[i-1].end
		}
		rec, err := decodeState(id, env, states[i], bodyAt+bodyLen)
		if err != nil {
			return nil, 0, err
		}
		if i == len(states)-1 && !packagesWhole(r, rec, prevEnd) {
			continue
		}
		rec.file = fs
		fs.end = states[i].end
		return rec, fs.end, nil
	}
	return &record{ID: id, Phase: phaseReceived, Envelope: env, file: fs}, fs.end, nil
}

// decodeState checks a state frame's record against the file it is in.
func decodeState(id string, env Envelope, st stateFrame, framesAt int64) (*record, error) {
	rec := &record{}
	if err := json.Unmarshal(st.payload, rec); err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrBadSpoolFile, err)
	}
	rec.Envelope = env
	if rec.ID != id || (rec.Phase != phaseReceived && rec.Phase != phaseSealed) {
		return nil, fmt.Errorf("%w: state of %q in phase %q", ErrBadSpoolFile, rec.ID, rec.Phase)
	}
	if rec.Phase == phaseReceived && len(rec.Packages) > 0 {
		return nil, fmt.Errorf("%w: packages before sealing", ErrBadSpoolFile)
	}
	for _, p := range rec.Packages {
		if p == nil || p.Off < framesAt+frameHeaderLen || p.Len < 0 || p.Off+p.Len > st.at {
			return nil, fmt.Errorf("%w: package outside the file's packages", ErrBadSpoolFile)
		}
		if sh := p.Shared; sh != nil && (sh.Off < framesAt+frameHeaderLen || sh.Len < 0 || sh.Off+sh.Len > st.at) {
			return nil, fmt.Errorf("%w: shared package part outside the file's packages", ErrBadSpoolFile)
		}
		for _, rc := range p.Rcpts {
			if rc == nil {
				return nil, fmt.Errorf("%w: empty recipient", ErrBadSpoolFile)
			}
		}
	}
	for _, p := range rec.Packages { // all non-nil now
		if p.Wait != nil && !rec.validWait(p) {
			return nil, fmt.Errorf("%w: package %d waits for %v", ErrBadSpoolFile, p.N, p.Wait.For)
		}
	}
	return rec, nil
}

// packagesWhole checks the checksums of rec's packages (and shared parts,
// each once) written after from.
func packagesWhole(r io.ReaderAt, rec *record, from int64) bool {
	checked := map[int64]bool{}
	whole := func(s segment) bool {
		if s.Off < from || checked[s.Off] {
			return true
		}
		cw := &crcWriter{w: io.Discard}
		if _, err := io.Copy(cw, io.NewSectionReader(r, s.Off, s.Len)); err != nil || cw.crc != s.CRC {
			return false
		}
		checked[s.Off] = true
		return true
	}
	for _, p := range rec.Packages {
		if !whole(segment{Off: p.Off, Len: p.Len, CRC: p.CRC}) {
			return false
		}
		if p.Shared != nil && !whole(*p.Shared) {
			return false
		}
	}
	return true
}
