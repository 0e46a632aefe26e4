// Package queue is the appliance's durable spool and the workers that take
// each spooled message through sealing to delivery.
//
// # Durability
//
// The spool is one file per message in Options.Dir:
//
//	tmp/    messages being received; removed on Open (never acknowledged)
//	msg/ID  a received message: a header (format line, body length,
//	        envelope as JSON), the body, then frames appended as the
//	        message moves on: its sealed packages and its state records
//	lock    flock held while a Queue has the spool open
//
// [Queue.Accept] writes the file in tmp/, fsyncs it, renames it into msg/
// and fsyncs the directory (shared by concurrent Accepts: group commit), and
// returns only then, so the SMTP front end may answer 250. [Queue.Stage]
// is its first half: the file written in tmp/, unsynced, for the front end
// to check the message from before [Staged.Commit] (the rest of Accept) or
// [Staged.Discard]. Every later
// transition appends to that file instead of creating files: the new
// packages, each with its CRC-32C in the state, then the state record (the
// whole record, checksummed), then one fdatasync. The last valid state
// record is the truth. A crash can tear only the last commit of a file, so
// Open checks the packages that commit added and falls back to the state
// before it if one is not whole; earlier commits were each followed by
// another that began after their fdatasync returned. A file with no state
// record is a received message. On Open an uncommitted tail is cut off.
// Packages whose bodies implement [SharedBody] are spooled as their own
// heads plus one frame per part they share (the encrypted content, written
// once per message whatever the number of packages); a package's record
// names its head and its shared frame, each with offset, length and CRC-32C,
// and delivery reads the two as one body. A shared part is checked as it is
// written for SMTP DATA form (CRLF line ends, no line begun by '.', a line end
// last); the record says so, and delivery may then send it from the file as it
// is ([WireBody]). Format 3 files start with their
// own line, so a version that knows only format 2 refuses them; format 2
// files are read.
// When a message is finished its file leaves msg/ (directory fsync'd: the
// commit of the last result) and, if small and the disk has room, waits in
// tmp/ to be overwritten by a later Accept.
//
// So a small message costs two fsyncs of its own and two shared directory
// fsyncs, and in the steady state creates and deletes no file. That matters
// on file systems where creating a file costs more than writing one (ext4
// without a journal searches past every recently deleted inode: 0.1 to 0.4
// ms of CPU per create on the bench machine). Format 1 (separate state/ and
// pkg/ files, temp file and rename per state change) is refused, not read.
//
// A message moves through these states:
//
//   - received: no state record, or one with phase "received" (which
//     records deferred sealing attempts).
//   - sealed: the packages and then a state naming them with their
//     recipients are appended. A crash before the state is durable re-seals
//     (the unfinished packages are cut off); a crash after it never does.
//   - per package and recipient: pending (with attempt count, next attempt
//     and last error), delivered or failed. A delivery result is committed
//     right after the transaction, so a recipient recorded as delivered is
//     never sent to again; a crash between the next hop's 250 and that commit
//     sends once more (at-least-once, as the README promises). A retry goes
//     only to the package's pending recipients, a subset of its envelope,
//     so it reveals nothing the first attempt would not have.
//
// A DSN is appended to the failing message as one more package (null
// sender, to the envelope sender, naming only the recipients that failed) in
// the same commit that records the failure, so a failure cannot be recorded
// without its DSN or reported twice. When every package is final the file
// is removed and the directory fsync'd: that removal is the commit of the
// last result.
//
// # Scheduling
//
// One worker owns one message at a time, so state writes of different
// messages never race; the packages of one message go out up to
// Options.PackageConcurrency at once; their results are applied one at a time
// and share group commits (one fdatasync for the results that ended while the
// previous one synced). Waiting messages sit in a heap ordered by due time. Retries follow Options.Retry (the last step
// repeats) until Options.MaxAge after arrival; the attempt that finds the
// message expired fails it with a DSN (status 4.4.7).
package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Processor plans and seals one spooled message.
type Processor interface {
	// Process plans and seals one spooled message. Errors that implement
	// Temporary() bool returning true (HSM down, directory unavailable)
	// defer the message and retry with backoff; any other error fails it
	// permanently and a DSN goes to the sender. Process may be called again
	// for the same message after a crash before its result was stored.
	Process(ctx context.Context, id string, env Envelope, body io.Reader) (*Sealed, error)
}

// Sealed is the result of processing: packages to deliver and recipients
// refused outright.
type Sealed struct {
	Packages []Package
	Refused  []Refusal
}

// Package is one outgoing SMTP transaction.
type Package struct {
	MailFrom string
	RcptTo   []string
	Body     io.WriterTo // written once to the spool
	// Mode and Profile say what the package is as the pipeline made it (encrypted, signed or
	// passthrough; compat, modern or none), so that nothing reads it again to guess.
	Mode, Profile string
	// Wait, when set, holds the package back until the next hop has accepted other packages of
	// the same Sealed (kept in the spool record; see Wait).
	Wait *Wait
	// Silent: the package's failures go into no DSN (the journal package, whose address the
	// message's sender must not learn, even when its reverse path is the sender's).
	Silent bool
}

// SharedBody may be implemented by a Package.Body whose bytes are a head of its own followed by
// a part that other packages of the same Sealed have byte for byte (the base64 of the encrypted
// content every package of a message carries). The spool then stores each shared part once per
// message and each package's head beside it, and delivery streams head and shared part as one
// body, so the spool grows with the message, not with message x packages.
type SharedBody interface {
	// SplitBody returns the head and the shared part; head followed by shared is what the
	// body's WriteTo writes. Packages share a part when SplitBody returns the same pointer (it
	// must be comparable). A nil shared means the package shares nothing and head is all of it.
	SplitBody() (head, shared io.WriterTo)
}

// Refusal is a recipient that gets no package and is reported in a DSN.
type Refusal struct {
	Recipient string
	Status    string // enhanced status code, e.g. "5.7.1"
	Reason    string
}

// Deliverer sends one package to the next hop.
type Deliverer interface {
	// Deliver runs one SMTP transaction. A non-nil error concerns the whole
	// transaction and nothing was delivered. Otherwise the result holds one
	// entry per recipient and the body was accepted for those whose Err is
	// nil. Errors report their class with Temporary() bool; an error without
	// it is treated as temporary, because retrying is safer than bouncing.
	// Wrapping a *smtp.SMTPError (go-smtp) puts the reply into the DSN.
	Deliver(ctx context.Context, mailFrom string, rcptTo []string, body io.Reader) ([]RcptResult, error)
}

// RcptResult is the outcome for one recipient of a transaction.
type RcptResult struct {
	Rcpt string
	Err  error // nil when accepted
}

// DefaultRetry is the retry schedule when Options.Retry is empty; its last
// step repeats.
var DefaultRetry = []time.Duration{
	time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour,
}

// DefaultMaxAge is how long a message is retried when Options.MaxAge is 0.
const DefaultMaxAge = 5 * 24 * time.Hour

// Options configure a [Queue].
type Options struct {
	Dir     string // spool directory, created if missing
	Workers int    // concurrent messages; default 4
	// PackageConcurrency bounds the transactions of one message in flight
	// at once; default DefaultPackageConcurrency.
	PackageConcurrency int
	Retry              []time.Duration // wait after the 1st, 2nd, ... failed attempt
	MaxAge             time.Duration   // give up this long after arrival
	Hostname           string          // for DSNs; default os.Hostname()

	// MaxMessageBytes limits a body in Accept (0: no limit).
	MaxMessageBytes int64
	// MinFreeBytes makes Accept refuse mail when the spool's file system has
	// less free space (0: only real write errors refuse).
	MinFreeBytes uint64

	Now    func() time.Time // clock; default time.Now
	Logger *slog.Logger     // default: discard
	// Outcome, when set, is told each recipient's result of each delivery attempt of a package
	// (not of a DSN) before the result is committed (the daemon's audit trail).
	Outcome func(Outcome)
}

// Outcome is one recipient's result of one delivery attempt. State is "delivered", "deferred"
// or "failed"; Err is the next hop's error (nil when delivered).
type Outcome struct {
	Message   string
	Package   int
	Recipient string
	State     string
	Err       error
}

// Errors of Accept and Open.
var (
	// ErrSpoolUnavailable means the spool cannot store a message now: disk
	// full, below Options.MinFreeBytes, or a write error. The front end
	// answers 452 4.3.1.
	ErrSpoolUnavailable = errors.New("spool unavailable")
	// ErrMessageTooBig means the body exceeds Options.MaxMessageBytes
	// (552 5.3.4).
	ErrMessageTooBig = errors.New("message too big")
	// ErrNoRecipients means an envelope without recipients.
	ErrNoRecipients = errors.New("no recipients")
	// ErrClosed means the queue no longer accepts work.
	ErrClosed = errors.New("queue closed")
)

// Queue is the spool and its workers.
type Queue struct {
	opts Options
	proc Processor
	dlv  Deliverer
	log  *slog.Logger
	sp   *spool

	mu       sync.Mutex
	entries  map[string]*entry // every unfinished message
	ready    dueHeap           // entries not owned by a worker, by due time
	wake     chan struct{}     // closed and replaced to wake all workers
	closed   bool              // Accept refuses
	stopping bool              // workers take no new work
	running  bool
	done     chan struct{} // closed when Run returns
	stats    Stats
}

type entry struct {
	rec *record // owned by the worker while it is out of the heap
	due time.Time
	idx int // position in q.ready, -1 while a worker owns it

	// A summary of rec for Stats, updated under q.mu, since rec itself
	// changes without the lock while a worker owns it.
	received, sealDeferred bool
	pending, deferred      int
}

func (e *entry) summarize() {
	e.received = e.rec.Phase == phaseReceived
	e.sealDeferred = e.received && e.rec.Attempts > 0
	e.pending, e.deferred = 0, 0
	for _, p := range e.rec.Packages {
		if !p.final() {
			e.pending++
			if p.Attempts > 0 {
				e.deferred++
			}
		}
	}
}

// Open prepares the spool in opts.Dir, locks it against a second process,
// and recovers every unfinished message.
func Open(opts Options, proc Processor, d Deliverer) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("failed to open queue: empty spool directory")
	}
	if proc == nil || d == nil {
		return nil, errors.New("failed to open queue: processor and deliverer are required")
	}
	if opts.Workers <= 0 {
		opts.Workers = 4
	}
	if opts.PackageConcurrency <= 0 {
		opts.PackageConcurrency = DefaultPackageConcurrency
	}
	if len(opts.Retry) == 0 {
		opts.Retry = DefaultRetry
	}
	for i, r := range opts.Retry {
		if r <= 0 {
			return nil, fmt.Errorf("failed to open queue: retry step %d is %v", i, r)
		}
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = DefaultMaxAge
	}
	if opts.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("failed to get hostname: %w", err)
		}
		opts.Hostname = h
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	sp, err := openSpool(opts.Dir, opts.MinFreeBytes)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		opts: opts, proc: proc, dlv: d, sp: sp,
		log:     opts.Logger,
		entries: make(map[string]*entry),
		wake:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	recs, err := sp.recover(q.log)
	if err != nil {
		sp.unlock()
		return nil, err
	}
	for _, rec := range recs {
		e := &entry{rec: rec}
		if rec.finished() {
			// Crashed while removing a finished message.
			if err := sp.remove(rec); err != nil {
				sp.unlock()
				return nil, err
			}
			continue
		}
		e.due = rec.nextDue()
		e.summarize()
		q.entries[rec.ID] = e
		heap.Push(&q.ready, e)
		q.log.Info("recovered", "id", rec.ID, "phase", rec.Phase)
	}
	return q, nil
}

// Accept durably spools one message and returns its id. Only after it
// returns without error may the message be acknowledged.
func (q *Queue) Accept(ctx context.Context, env Envelope, body io.Reader) (string, error) {
	st, err := q.stage(ctx, env, body, 0)
	if err != nil {
		return "", err
	}
	return st.Commit("")
}

// Staged is a message whose bytes are in the spool's tmp/ but which is not
// accepted yet: the front end checks it from there (Body) and then commits
// it (the 250) or discards it (a refusal). A staged message is not synced,
// and a start-up removes one that was neither committed nor discarded, as
// it removes every file in tmp/: nothing refused stays in the spool, and
// nothing is acknowledged before Commit returns.
type Staged struct {
	q    *Queue
	st   *staged
	now  time.Time
	done bool
}

// Stage writes a message to tmp/ for a check before Accept's commit. The
// caller must call Commit or Discard.
func (q *Queue) Stage(ctx context.Context, env Envelope, body io.Reader) (*Staged, error) {
	return q.stage(ctx, env, body, envelopeRoom)
}

func (q *Queue) stage(ctx context.Context, env Envelope, body io.Reader, room int) (*Staged, error) {
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if len(env.RcptTo) == 0 {
		return nil, ErrNoRecipients
	}
	now := q.opts.Now()
	if env.ReceivedAt.IsZero() {
		env.ReceivedAt = now
	}
	env.RcptTo = append([]string(nil), env.RcptTo...)
	if q.opts.MinFreeBytes > 0 {
		free, err := freeBytes(q.sp.dir)
		if err != nil {
			return nil, fmt.Errorf("failed to check free space: %w: %w", ErrSpoolUnavailable, err)
		}
		if free < q.opts.MinFreeBytes {
			return nil, fmt.Errorf("failed to accept message: %w: %d bytes free, %d required", ErrSpoolUnavailable, free, q.opts.MinFreeBytes)
		}
	}
	st, err := q.sp.stageMessage(ctx, newID(now), env, body, q.opts.MaxMessageBytes, room)
	if err != nil {
		return nil, err
	}
	return &Staged{q: q, st: st, now: now}, nil
}

// Body reads the staged message back from the spool file.
func (s *Staged) Body() *io.SectionReader { return s.st.body() }

// Size is the staged message's length in bytes.
func (s *Staged) Size() int64 { return s.st.n }

// Commit makes the staged message durable and queues it, as Accept does,
// and returns its id. class (Envelope.Class, what the check found) is kept
// in the envelope when not empty. The message is gone when Commit fails.
func (s *Staged) Commit(class string) (string, error) {
	if s.done {
		return "", errors.New("failed to accept message: staged message already committed or discarded")
	}
	s.done = true
	q := s.q
	q.mu.Lock()
	closed := q.closed
	q.mu.Unlock()
	if closed {
		s.st.discard(nil)
		return "", ErrClosed
	}
	var with *Envelope
	if class != "" {
		env := s.st.env
		env.Class = class
		with = &env
	}
	fs, err := s.st.commit(with)
	if err != nil {
		return "", err
	}
	id, env := s.st.id, s.st.env
	rec := &record{ID: id, Phase: phaseReceived, Envelope: env, file: fs}
	q.mu.Lock()
	e := &entry{rec: rec, due: s.now}
	e.summarize()
	q.entries[id] = e
	heap.Push(&q.ready, e)
	q.stats.Accepted++
	q.wakeLocked()
	q.mu.Unlock()
	q.log.Info("received", "id", id, "rcpts", len(env.RcptTo))
	return id, nil
}

// Discard removes the staged message; it was never accepted. Discarding
// after Commit does nothing.
func (s *Staged) Discard() {
	if !s.done {
		s.done = true
		s.st.discard(nil)
	}
}

// Kick wakes the workers to look for due work now, e.g. after a test moved
// its clock.
func (q *Queue) Kick() {
	q.mu.Lock()
	q.wakeLocked()
	q.mu.Unlock()
}

func (q *Queue) wakeLocked() {
	close(q.wake)
	q.wake = make(chan struct{})
}

// Run works the queue until ctx ends or Close is called. Cancelling ctx
// aborts in-flight work, which stays spooled for the next start; Close lets
// it finish.
func (q *Queue) Run(ctx context.Context) error {
	q.mu.Lock()
	if q.running || q.stopping {
		q.mu.Unlock()
		return errors.New("failed to run queue: already running or closed")
	}
	q.running = true
	q.mu.Unlock()
	defer close(q.done)

	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		q.stopping = true
		q.wakeLocked()
		q.mu.Unlock()
	})
	defer stop()

	var wg sync.WaitGroup
	for range q.opts.Workers {
		wg.Go(func() {
			for {
				e := q.next()
				if e == nil {
					return
				}
				q.work(ctx, e)
			}
		})
	}
	wg.Wait()
	return nil
}

// Close stops taking new messages and new work, waits for in-flight work to
// finish (cancel Run's context to cut it short), and releases the spool.
func (q *Queue) Close() error {
	q.mu.Lock()
	q.closed = true
	q.stopping = true
	running := q.running
	q.wakeLocked()
	q.mu.Unlock()
	if running {
		<-q.done
	}
	q.mu.Lock()
	q.sp.unlock()
	q.mu.Unlock()
	return nil
}

// next blocks until a message is due, and marks it busy; nil means stop.
func (q *Queue) next() *entry {
	for {
		q.mu.Lock()
		if q.stopping {
			q.mu.Unlock()
			return nil
		}
		now := q.opts.Now()
		// Bounded so a clock that jumps is noticed.
		wait := 30 * time.Second
		if len(q.ready) > 0 {
			best := q.ready[0]
			if !best.due.After(now) {
				heap.Pop(&q.ready)
				q.mu.Unlock()
				return best
			}
			wait = min(wait, best.due.Sub(now))
		}
		wake := q.wake
		q.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Stats counts messages by state (those in the spool now) and events since
// Open.
type Stats struct {
	Messages     int // unfinished messages in the spool
	Received     int // not yet sealed
	SealDeferred int // of Received, those whose sealing failed at least once
	Pending      int // packages waiting for a (first or further) attempt
	Deferred     int // of Pending, those that have failed at least once
	Accepted     int // Accept calls that succeeded
	Delivered    int // recipients delivered (DSN recipients included)
	Failed       int // recipients failed permanently (reported by DSN when possible)
	DSNs         int // DSN packages created
}

// Stats returns a snapshot of the counts.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	for _, e := range q.entries {
		s.Messages++
		if e.received {
			s.Received++
		}
		if e.sealDeferred {
			s.SealDeferred++
		}
		s.Pending += e.pending
		s.Deferred += e.deferred
	}
	return s
}

// dueHeap orders waiting entries by due time, so picking the next one stays
// cheap with a large deferred backlog.
type dueHeap []*entry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *dueHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.idx = -1
	*h = old[:len(old)-1]
	return e
}
