package audit

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultMaxBytes = 64 << 20
	DefaultMaxAge   = 24 * time.Hour
)

// Options configure a Log.
type Options struct {
	Dir      string        // the trail's directory, created if missing; one Log per directory
	MaxBytes int64         // rotate before a record would take the file past this size (default 64 MiB)
	MaxAge   time.Duration // rotate at the first record after the file is this old (default 24 h)
	// Signer signs each file's head when the file is closed. Nil leaves the seal record unsigned
	// (Verify reports such a file as unsigned); the daemon passes the HSM's key.
	Signer crypto.Signer
	Now    func() time.Time // default time.Now
}

// Accepted is one message accepted from a client.
type Accepted struct {
	Message    string
	From       string
	AuthUser   string
	Recipients []string
	Size       int64
	Digest     [sha256.Size]byte
}

// Sealed is one package sealed: who it is for, its RecipientInfo identifiers (as the directory
// names them, e.g. "issuer-serial:..." or "ski:..."), and the SHA-256 of its bytes.
type Sealed struct {
	Message        string
	Package        int
	Mode, Profile  string
	Recipients     []string
	RecipientInfos []string
	Digest         [sha256.Size]byte
}

// Delivery is one delivery outcome for one recipient of a package.
type Delivery struct {
	Message   string
	Package   int
	Recipient string
	Outcome   string // Delivered, Deferred or Bounced
	Reply     string
}

// Log appends records to the trail. It is safe for concurrent use.
type Log struct {
	opts Options

	mu     sync.Mutex
	f      *os.File
	index  uint64    // current file's index
	opened time.Time // current file's open record time
	size   int64
	seq    uint64 // last record's seq
	head   string // hash of the last record
	synced uint64 // every record up to this seq is on disk
	closed bool

	syncMu sync.Mutex // one fdatasync at a time; taken before mu, never while holding it
}

var fileRE = func(name string) (uint64, bool) {
	if !strings.HasPrefix(name, "audit-") || !strings.HasSuffix(name, ".log") {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "audit-"), ".log"), 10, 64)
	return n, err == nil && n > 0
}

// FileName is the name of the trail's file number index.
func FileName(index uint64) string { return fmt.Sprintf("audit-%06d.log", index) }

// Open opens the trail in opts.Dir: it continues the newest file if that was not sealed (after a
// crash; a torn last line is cut off), or starts the next file after a sealed one.
func Open(opts Options) (*Log, error) {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	l := &Log{opts: opts}
	files, err := trailFiles(opts.Dir)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return l, l.startFile(1)
	}
	last := files[len(files)-1]
	if err := l.resume(last); err != nil {
		return nil, err
	}
	return l, nil
}

// trailFiles lists the indexes of the trail's files in order.
func trailFiles(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		if n, ok := fileRE(e.Name()); ok && e.Type().IsRegular() {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// resume reads file index, cuts a torn last line, and continues it, or starts the next file when
// it ends with its seal.
func (l *Log) resume(index uint64) error {
	path := filepath.Join(l.opts.Dir, FileName(index))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	keep := bytes.LastIndexByte(data, '\n') + 1
	if keep < len(data) {
		// A line without its newline was being written when the process stopped; it was never
		// acknowledged (Append returns after the sync of the whole line).
		if err := f.Truncate(int64(keep)); err != nil {
			f.Close()
			return fmt.Errorf("audit: cut torn record of %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("audit: %w", err)
		}
		data = data[:keep]
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	if len(data) == 0 {
		// Created, but its open record never made it to disk: the file before it was sealed
		// (a file is started only after that), so start this one again from there.
		f.Close()
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		if index == 1 {
			return l.startFile(1)
		}
		return l.resume(index - 1)
	}
	var first, last Record
	if err := json.Unmarshal(lines[0], &first); err != nil || first.Type != TypeOpen || first.File != index {
		f.Close()
		return fmt.Errorf("audit: %s does not start with its open record", path)
	}
	lastLine := lines[len(lines)-1]
	if err := json.Unmarshal(lastLine, &last); err != nil {
		f.Close()
		return fmt.Errorf("audit: last record of %s unreadable: %v", path, err)
	}
	l.seq, l.head = last.Seq, lineHash(lastLine)
	// What a crash left may be in the page cache only: sync it before anything builds on it.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("audit: sync %s: %w", path, err)
	}
	l.synced = l.seq
	if last.Type == TypeSeal {
		f.Close()
		return l.startFile(index + 1)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.index, l.opened, l.size = f, index, first.Time, int64(len(data))
	return nil
}

// startFile creates file index with its open record, synced with its directory.
func (l *Log) startFile(index uint64) error {
	path := filepath.Join(l.opts.Dir, FileName(index))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	l.f, l.index, l.size = f, index, 0
	now := l.opts.Now().UTC()
	l.opened = now
	if err := l.write(&Record{Time: now, Type: TypeOpen, File: index}); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return fmt.Errorf("audit: sync %s: %w", path, err)
	}
	if err := syncDir(l.opts.Dir); err != nil {
		return err
	}
	l.synced = l.seq
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", dir, err)
	}
	return nil
}

// write appends r as the next record and syncs it. Callers hold mu.
func (l *Log) write(r *Record) error {
	r.Seq, r.Prev = l.seq+1, l.head
	if r.Time.IsZero() {
		r.Time = l.opts.Now().UTC()
	}
	line, err := marshal(r)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	n, err := l.f.Write(append(line, '\n'))
	l.size += int64(n)
	if err != nil {
		return fmt.Errorf("audit: write %s: %w", l.f.Name(), err)
	}
	l.seq, l.head = r.Seq, lineHash(line)
	return nil
}

// durable returns once record seq is on disk: one fdatasync covers every record written before
// it, so concurrent callers share one (group commit). syncMu serialises the syncs; mu is held
// only to read and update the state, never during a sync.
func (l *Log) durable(seq uint64) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	if l.synced >= seq {
		l.mu.Unlock()
		return nil
	}
	target, f := l.seq, l.f
	l.mu.Unlock()
	err := errors.New("audit: no open file")
	if f != nil {
		err = fdatasync(f)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.synced >= seq {
		// A rotation closed the file and synced it meanwhile.
		return nil
	}
	if err != nil {
		return fmt.Errorf("audit: sync: %w", err)
	}
	l.synced = max(l.synced, target)
	return nil
}

// Append writes r (its Seq, Prev and, when zero, Time are filled in) and returns once it is on
// disk. It rotates first when the file is too big or too old.
func (l *Log) Append(r Record) error {
	if r.Type == TypeOpen || r.Type == TypeSeal {
		return fmt.Errorf("audit: %s records are the log's own", r.Type)
	}
	seq, err := l.appendLocked(&r)
	if err != nil {
		return err
	}
	return l.durable(seq)
}

func (l *Log) appendLocked(r *Record) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, errors.New("audit: log closed")
	}
	line, err := marshal(r)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	// The estimate ignores seq/prev growth; a few bytes over MaxBytes do no harm.
	if l.size+int64(len(line))+100 > l.opts.MaxBytes || l.opts.Now().Sub(l.opened) >= l.opts.MaxAge {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	if err := l.write(r); err != nil {
		return 0, err
	}
	return l.seq, nil
}

// Accepted records one accepted message.
func (l *Log) Accepted(a Accepted) error {
	return l.Append(Record{Type: TypeAccepted, Message: a.Message, From: a.From, AuthUser: a.AuthUser,
		Recipients: a.Recipients, Size: a.Size, Digest: Digest(a.Digest)})
}

// Sealed records one sealed package.
func (l *Log) Sealed(s Sealed) error {
	p := s.Package
	return l.Append(Record{Type: TypeSealed, Message: s.Message, Package: &p, Mode: s.Mode, Profile: s.Profile,
		Recipients: s.Recipients, RecipientInfos: s.RecipientInfos, Digest: Digest(s.Digest)})
}

// Delivery records one delivery outcome.
func (l *Log) Delivery(d Delivery) error {
	p := d.Package
	return l.Append(Record{Type: TypeDelivery, Message: d.Message, Package: &p, Recipient: d.Recipient,
		Outcome: d.Outcome, Reply: d.Reply})
}

// Rotate seals the current file and starts the next one.
func (l *Log) Rotate() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("audit: log closed")
	}
	return l.rotate()
}

func (l *Log) rotate() error {
	if err := l.seal(); err != nil {
		return err
	}
	return l.startFile(l.index + 1)
}

// seal writes the seal record (signed head), syncs and closes the current file.
func (l *Log) seal() error {
	r := &Record{Type: TypeSeal, File: l.index, Head: l.head}
	if s := l.opts.Signer; s != nil {
		spki, err := x509.MarshalPKIXPublicKey(s.Public())
		if err != nil {
			return fmt.Errorf("audit: signer's public key: %w", err)
		}
		st := Statement(l.index, l.seq+1, l.head)
		var sig []byte
		if _, ok := s.Public().(ed25519.PublicKey); ok {
			sig, err = s.Sign(rand.Reader, st, crypto.Hash(0))
		} else {
			d := sha256.Sum256(st)
			sig, err = s.Sign(rand.Reader, d[:], crypto.SHA256)
		}
		if err != nil {
			return fmt.Errorf("audit: sign head of %s: %w", FileName(l.index), err)
		}
		r.Key = base64.StdEncoding.EncodeToString(spki)
		r.Signature = base64.StdEncoding.EncodeToString(sig)
	}
	if err := l.write(r); err != nil {
		return err
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", l.f.Name(), err)
	}
	l.synced = l.seq
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Close seals the current file. The next Open starts a new file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return l.seal()
}

// Head is the current file's index, the last seq and the hash of the last record.
func (l *Log) Head() (file, seq uint64, head string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.index, l.seq, l.head
}

// readLines splits a file into its lines (without newlines); a last line without a newline is
// returned too, so that Verify can name it.
func readLines(r io.Reader) ([][]byte, error) {
	var out [][]byte
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out, sc.Err()
}
