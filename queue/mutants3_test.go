package queue

// Tests that kill mutants scripts/mutation.sh found living in queue's prefixed.go and wire.go
// (target queue-rest), in the lines of queue.go and spool.go changed since the queue-spool run
// (queue-stage: the staged spool write, the group commit) and of worker.go since the
// queue-worker run (queue-worker-new), and worker.go:23, which that run left
// (docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/lockedbuf"
)

// syncFailFS is the real file system under a running Queue with two additions: it records each
// fsync and fdatasync of a spool file in a shared event list (a Deliverer records its attempts in
// the same list), and, when armed, fails the next one once with EIO, as a disk error would.
type syncFailFS struct {
	osFS
	ev     *events
	arm    atomic.Bool
	failed atomic.Int32 // syncs failed so far
	// failWrites, when set, fails every WriteAt with EIO.
	failWrites atomic.Bool
	// beforeSync, when set, runs before each sync is recorded and done.
	beforeSync func()
}

type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *events) get() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

func (f *syncFailFS) CreateTemp(dir, pattern string) (spoolFile, error) {
	sf, err := f.osFS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return &syncFailFile{sf, f}, nil
}

func (f *syncFailFS) OpenFile(name string, flag int) (spoolFile, error) {
	sf, err := f.osFS.OpenFile(name, flag)
	if err != nil {
		return nil, err
	}
	return &syncFailFile{sf, f}, nil
}

type syncFailFile struct {
	spoolFile
	fs *syncFailFS
}

func (f *syncFailFile) sync(do func() error) error {
	if f.fs.beforeSync != nil {
		f.fs.beforeSync()
	}
	f.fs.ev.add("sync")
	if f.fs.arm.CompareAndSwap(true, false) {
		f.fs.failed.Add(1)
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
	}
	return do()
}

func (f *syncFailFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.EIO}
	}
	return f.spoolFile.WriteAt(p, off)
}

func (f *syncFailFile) Sync() error     { return f.sync(f.spoolFile.Sync) }
func (f *syncFailFile) Datasync() error { return f.sync(f.spoolFile.Datasync) }

// onePackage seals each message as one package to all its recipients.
type onePackage struct{}

func (onePackage) Process(_ context.Context, _ string, env Envelope, body io.Reader) (*Sealed, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	return &Sealed{Packages: []Package{{MailFrom: env.MailFrom, RcptTo: env.RcptTo, Body: bytes.NewReader(b)}}}, nil
}

// scriptedDeliverer answers each delivery attempt with the next of its replies (nil: accepted;
// after the last, every attempt is accepted) and records the attempt, by reverse path, in ev;
// before answering it may arm the file system's failure.
type scriptedDeliverer struct {
	ev      *events
	mu      sync.Mutex
	dsns    []string // the bodies sent with a null reverse path
	replies []error
	armOn   int // the attempt (from 1) before whose answer fs is armed; 0: never
	fs      *syncFailFS
	n       int
}

func (d *scriptedDeliverer) Deliver(_ context.Context, from string, rcptTo []string, body io.Reader) ([]RcptResult, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	if from == "" {
		d.dsns = append(d.dsns, string(b))
	}
	d.n++
	var reply error
	if d.n <= len(d.replies) {
		reply = d.replies[d.n-1]
	}
	if d.n == d.armOn {
		d.fs.arm.Store(true)
	}
	d.mu.Unlock()
	d.ev.add("deliver from <" + from + ">")
	out := make([]RcptResult, len(rcptTo))
	for i, r := range rcptTo {
		out[i] = RcptResult{Rcpt: r, Err: reply}
	}
	return out, nil
}

// runOverSyncFailFS opens a queue in a new directory with its spool on a syncFailFS, runs it,
// accepts one message to one recipient and waits until the queue is empty.
func runOverSyncFailFS(t *testing.T, d *scriptedDeliverer, logs io.Writer) *syncFailFS {
	t.Helper()
	fsys, _ := runScripted(t, onePackage{}, d, []string{"b@example.test"}, logs, nil)
	return fsys
}

// runScripted is runOverSyncFailFS with p sealing a message to rcpts and tune, when not nil,
// changing the queue's options; it also returns the queue's Stats once the message finished.
func runScripted(t *testing.T, p Processor, d *scriptedDeliverer, rcpts []string, logs io.Writer, tune func(*Options)) (*syncFailFS, Stats) {
	t.Helper()
	ev := &events{}
	fsys := &syncFailFS{ev: ev}
	d.ev, d.fs = ev, fsys
	opts := Options{Dir: t.TempDir(), Hostname: "relay.example.test", Retry: []time.Duration{time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if tune != nil {
		tune(&opts)
	}
	// Before Run: no worker has touched the spool yet.
	q, stop := runQueue(t, opts, p, d, func(q *Queue) { q.sp.fs = fsys })
	defer stop()
	if _, err := q.Accept(context.Background(), Envelope{MailFrom: "a@example.test", RcptTo: rcpts},
		strings.NewReader("Subject: x\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, q, func() string { return fmt.Sprintf("events %q", ev.get()) })
	return fsys, q.Stats()
}

// TestDSNCommitRetried: when the commit of a delivery result that failed a recipient fails (the
// fdatasync returns EIO), the DSN it added is in memory only; the next pass of the message
// commits it first and then sends it, once (worker.go:23, the commit of a DSN whose commit
// failed: without it the DSN stays unwritten, and an unwritten package is never sent).
func TestDSNCommitRetried(t *testing.T) {
	var logs lockedbuf.Buffer
	e550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	d := &scriptedDeliverer{replies: []error{e550}, armOn: 1}
	fsys := runOverSyncFailFS(t, d, &logs)
	if n := fsys.failed.Load(); n != 1 {
		t.Fatalf("%d syncs failed, want 1", n)
	}
	if !strings.Contains(logs.String(), "failed to record state") {
		t.Fatalf("the failed commit was not logged:\n%s", logs.String())
	}
	ev := fsys.ev.get()
	var delivers []string
	for _, e := range ev {
		if strings.HasPrefix(e, "deliver") {
			delivers = append(delivers, e)
		}
	}
	if want := []string{"deliver from <a@example.test>", "deliver from <>"}; !slices.Equal(delivers, want) {
		t.Fatalf("attempts %q, want the package refused and then its DSN sent once", delivers)
	}
	// The DSN's commit (a sync that succeeds) comes between the failed one and the DSN's
	// delivery.
	i := slices.Index(ev, "deliver from <a@example.test>")
	j := slices.Index(ev, "deliver from <>")
	if syncs := j - i - 1; syncs != 2 {
		t.Fatalf("%d syncs between the refusal and the DSN's delivery, want 2 (the failed commit, the DSN's commit): %q", syncs, ev)
	}
}

// TestPassWithoutNewsWritesNothing: a pass over a sealed message with nothing unwritten sends
// without committing first: after a deferral's commit, the next attempt follows with no sync
// between them (worker.go:23 made len(rec.unwritten) >= 0 committed the same state again on
// every pass, one more fdatasync per attempt).
func TestPassWithoutNewsWritesNothing(t *testing.T) {
	var logs lockedbuf.Buffer
	e451 := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	d := &scriptedDeliverer{replies: []error{e451, e451}}
	fsys := runOverSyncFailFS(t, d, &logs)
	ev := fsys.ev.get()
	var at []int
	for i, e := range ev {
		if e == "deliver from <a@example.test>" {
			at = append(at, i)
		}
	}
	if len(at) != 3 || slices.Contains(ev, "deliver from <>") {
		t.Fatalf("events %q, want three attempts of the package and no DSN", ev)
	}
	for k := range 2 {
		if syncs := at[k+1] - at[k] - 1; syncs != 1 {
			t.Errorf("%d syncs between attempts %d and %d, want 1 (the deferral's commit): %q", syncs, k+1, k+2, ev)
		}
	}
	// Each attempt is logged once its result is durable: a deferral with its attempt number,
	// next time and error, a delivery without them (worker.go:627, :637, :639).
	var deferred, delivered int
	for _, line := range strings.Split(logs.String(), "\n") {
		switch {
		case strings.Contains(line, `msg="delivery deferred"`):
			deferred++
			if !strings.Contains(line, "attempt=") || !strings.Contains(line, "next=") || !strings.Contains(line, "451") {
				t.Errorf("deferral logged without attempt, next time or error: %s", line)
			}
		case strings.Contains(line, "msg=delivered"):
			delivered++
			if strings.Contains(line, "attempt=") {
				t.Errorf("delivery logged with an attempt number: %s", line)
			}
		case strings.Contains(line, `msg="delivery failed"`):
			t.Errorf("a failure logged: %s", line)
		}
	}
	if deferred != 2 || delivered != 1 {
		t.Errorf("%d deferrals and %d deliveries logged, want 2 and 1:\n%s", deferred, delivered, logs.String())
	}
}

// TestPrefixedWriteToCount: WriteTo returns the bytes it wrote, prefix and body, whole or as
// the head of a split body (prefixed.go:33, the sum made a difference).
func TestPrefixedWriteToCount(t *testing.T) {
	tail := &sharedTail{b: []byte("shared\r\n")}
	for _, body := range []io.WriterTo{strings.NewReader("a body\r\n"), &sharedBody{head: "head\r\n\r\n", tail: tail, split: true}} {
		p := NewPrefixed("Received: by relay.example.test\r\n", body, nil)
		head, _ := p.SplitBody()
		for _, w := range []io.WriterTo{p, head} {
			var buf bytes.Buffer
			n, err := w.WriteTo(&buf)
			if err != nil || n != int64(buf.Len()) || !strings.HasPrefix(buf.String(), "Received: ") {
				t.Errorf("%T: WriteTo = %d, %v; wrote %d bytes: %q", body, n, err, buf.Len(), buf.String())
			}
		}
	}
}

// TestWireTailOfTwo: a shared part of exactly one CRLF is in wire form and offered as a tail
// of 2 bytes, the least a tail can be (wire.go:41, Len < 2 made <= 2).
func TestWireTailOfTwo(t *testing.T) {
	sp := newTestSpool(t)
	rec := spoolMessage(t, sp, "body\r\n")
	body := &sharedBody{head: "To: b\r\n\r\nTUlJ", tail: &sharedTail{b: []byte("\r\n")}, split: true}
	addShared(rec, []*sharedBody{body})
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	f, r, err := sp.openPackage(rec, rec.Packages[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head, tail, ok := r.(WireBody).WireTail()
	if !ok || tail.Len != 2 {
		t.Fatalf("WireTail: ok %v, %+v; want a tail of 2 bytes", ok, tail)
	}
	h, err := io.ReadAll(head)
	if err != nil {
		t.Fatal(err)
	}
	tb := make([]byte, tail.Len)
	if _, err := tail.File.ReadAt(tb, tail.Off); err != nil {
		t.Fatal(err)
	}
	if got := string(h) + string(tb); got != string(body.bytes()) {
		t.Fatalf("head and tail %q, want %q", got, body.bytes())
	}
}

// TestStagedEnvelopeRoom: the envelope a check completes is written in place when it fits the
// room the staged file left for it, to the last byte, and left as it was when it is one byte
// longer (spool.go:587: the first that does not fit made to fit wrote a line one byte too long,
// a negative count of blanks).
func TestStagedEnvelopeRoom(t *testing.T) {
	const room = 40
	sp := newTestSpool(t)
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}, ReceivedAt: time.Unix(1e9, 0).UTC()}
	base, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	with := func(class string) int {
		e := env
		e.Class = class
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	// The room is the envelope line's: the longest envelope that fits is len(base)+room.
	fits := strings.Repeat("c", room-(with("")+len(`,"Class":""`)-len(base)))
	if with(fits) != len(base)+room {
		t.Fatalf("envelope with class of %d: %d bytes, want %d", len(fits), with(fits), len(base)+room)
	}
	for _, tc := range []struct {
		class string
		kept  bool
	}{{fits, true}, {fits + "c", false}} {
		st, err := sp.stageMessage(context.Background(), newID(time.Now()), env, strings.NewReader("body\r\n"), 0, room)
		if err != nil {
			t.Fatal(err)
		}
		e := env
		e.Class = tc.class
		if _, err := st.commit(&e); err != nil {
			t.Fatal(err)
		}
		rec, _, err := sp.load(st.id)
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		if tc.kept {
			want = tc.class
		}
		if rec.Envelope.Class != want || rec.Envelope.MailFrom != env.MailFrom {
			t.Errorf("class of %d bytes: loaded envelope %+v, want class %q", len(tc.class), rec.Envelope, want)
		}
		f, body, err := sp.openBody(rec)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(body)
		f.Close()
		if err != nil || string(b) != "body\r\n" {
			t.Errorf("class of %d bytes: body %q, %v", len(tc.class), b, err)
		}
	}
}

// failingPart is a package body or shared part whose bytes cannot be produced.
type failingPart struct{ err error }

func (p failingPart) WriteTo(io.Writer) (int64, error) { return 0, p.err }

// TestPackageWriteErrors: a package's own bytes or its shared part failing to be produced
// fail the commit with their own error, not as the spool's; a disk that fails to take them
// fails it as the spool's (ErrSpoolUnavailable) (spool.go:849 for a shared part, :859 for a
// package's own bytes, which tell the two apart; the second was left by the queue-spool run,
// as spool.go:745 then).
func TestPackageWriteErrors(t *testing.T) {
	errPart := errors.New("the part's reader failed")
	for _, tc := range []struct {
		name         string
		body, shared io.WriterTo
		disk         bool
	}{
		{"shared part fails", strings.NewReader("head\r\n"), failingPart{errPart}, false},
		{"package fails", failingPart{errPart}, nil, false},
		{"package after its shared part fails", failingPart{errPart}, &sharedTail{b: []byte("shared\r\n")}, false},
		{"disk fails a shared part", strings.NewReader("head\r\n"), &sharedTail{b: []byte("shared\r\n")}, true},
		{"disk fails a package", strings.NewReader("head\r\n"), nil, true},
	} {
		sp := newTestSpool(t)
		rec := spoolMessage(t, sp, "body\r\n")
		p := &pkgRecord{N: 0, MailFrom: rec.Envelope.MailFrom, Rcpts: []*rcptRecord{{Addr: "b@example.test", State: rcptPending}}}
		rec.Phase = phaseSealed
		rec.Packages = append(rec.Packages, p)
		rec.unwritten = append(rec.unwritten, newPackage{rec: p, body: tc.body, shared: tc.shared})
		if tc.disk {
			fsys := &syncFailFS{ev: &events{}}
			fsys.failWrites.Store(true)
			sp.fs = fsys
		}
		err := sp.commit(rec)
		switch {
		case err == nil:
			t.Fatalf("%s: commit succeeded", tc.name)
		case errors.Is(err, ErrSpoolUnavailable) != tc.disk:
			t.Errorf("%s: %v; want a spool error: %v", tc.name, err, tc.disk)
		case !tc.disk && !errors.Is(err, errPart):
			t.Errorf("%s: %v, want it to name %v", tc.name, err, errPart)
		case tc.disk && !errors.Is(err, syscall.EIO):
			t.Errorf("%s: %v, want EIO", tc.name, err)
		}
	}
}

// journalAndWaiting seals a message as a journal package (silent, to journal@example.test) and
// a package waiting for it, to member@example.test with the reverse path from.
type journalAndWaiting struct{ from string }

func (p journalAndWaiting) Process(_ context.Context, _ string, env Envelope, body io.Reader) (*Sealed, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	return &Sealed{Packages: []Package{
		{MailFrom: env.MailFrom, RcptTo: []string{"journal@example.test"}, Body: bytes.NewReader(b), Silent: true},
		{MailFrom: p.from, RcptTo: []string{"member@example.test"}, Body: bytes.NewReader(b), Wait: &Wait{For: []int{0}}},
	}}, nil
}

// TestWaitReportOwnReversePath: when the journal package fails, the DSN for a waiting package
// with a reverse path of its own (a list member's copy) names the envelope recipients in no
// package (the list), never the member; one with the sender's reverse path names its own
// recipient and not the envelope recipients in no package (worker.go:110, which of the two
// gets Wait.Report); both recipients count as failed (worker.go:339, failWaiting's count).
func TestWaitReportOwnReversePath(t *testing.T) {
	e550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	for _, tc := range []struct {
		from       string
		named, not []string
	}{
		{"list-bounces@example.test", []string{"list@example.test"}, []string{"member@", "journal@"}},
		{"a@example.test", []string{"member@example.test"}, []string{"list@", "journal@"}},
	} {
		var logs lockedbuf.Buffer
		d := &scriptedDeliverer{replies: []error{e550}}
		fsys, st := runScripted(t, journalAndWaiting{tc.from}, d, []string{"list@example.test"}, &logs, nil)
		// Failed: the journal package's recipient and the waiting package's; delivered: the DSN.
		if st.Failed != 2 || st.Delivered != 1 || st.DSNs != 1 {
			t.Errorf("from %s: stats %+v, want 2 failed, 1 delivered (the DSN), 1 DSN", tc.from, st)
		}
		// The journal's failure fails the waiting package in the same commit: one sync between
		// the journal's attempt and the DSN's (worker.go:622 negated left the waiting package to
		// the next pass, one commit more).
		ev := fsys.ev.get()
		i, j := slices.Index(ev, "deliver from <a@example.test>"), slices.Index(ev, "deliver from <>")
		if i < 0 || j < i || slices.Contains(ev[i+1:j], "deliver from <a@example.test>") || j-i-1 != 1 {
			t.Errorf("from %s: events %q, want the journal's attempt, one sync, the DSN", tc.from, ev)
		}
		d.mu.Lock()
		dsns := slices.Clone(d.dsns)
		d.mu.Unlock()
		if len(dsns) != 1 {
			t.Fatalf("from %s: %d DSNs, want 1:\n%s", tc.from, len(dsns), logs.String())
		}
		for _, a := range tc.named {
			if !strings.Contains(dsns[0], "Final-Recipient: rfc822; "+a) {
				t.Errorf("from %s: the DSN does not name %s:\n%s", tc.from, a, dsns[0])
			}
		}
		for _, a := range tc.not {
			if strings.Contains(dsns[0], a) {
				t.Errorf("from %s: the DSN names %s:\n%s", tc.from, a, dsns[0])
			}
		}
	}
}

// TestCheckSealedWaitBounds: a package may wait for any other package that waits for nothing,
// the first and the last included; a wait for a number out of range, below or exactly at the
// count, is refused, not an index out of range (worker.go:228, both bounds).
func TestCheckSealedWaitBounds(t *testing.T) {
	body := strings.NewReader("x")
	sealed := func(waiter int, on int) *Sealed {
		s := &Sealed{}
		for i := range 3 {
			p := Package{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}, Body: body}
			if i == waiter {
				p.Wait = &Wait{For: []int{on}}
			}
			s.Packages = append(s.Packages, p)
		}
		return s
	}
	for _, tc := range []struct {
		waiter, on int
		ok         bool
	}{{2, 0, true}, {0, 2, true}, {1, 0, true}, {2, -1, false}, {2, 3, false}, {2, 2, false}} {
		if err := checkSealed(sealed(tc.waiter, tc.on)); (err == nil) != tc.ok {
			t.Errorf("package %d waiting for %d: %v, want ok %v", tc.waiter, tc.on, err, tc.ok)
		}
	}
}

// TestDecodeStateWaitRange: a spool state whose package waits for a number that is no package
// (below 0, or exactly the count), for itself or for a DSN is refused as a bad spool file, and
// loading it does not index out of range; a wait for another sealed package loads
// (worker.go:286, record.pkg's bounds, which validWait relies on for numbers from the file).
func TestDecodeStateWaitRange(t *testing.T) {
	const id = "0123456789abcdef0123456789"
	const framesAt, at = 1000, 2000
	first := int64(framesAt + frameHeaderLen)
	for _, tc := range []struct {
		on int
		ok bool
	}{{0, true}, {-1, false}, {3, false}, {1, false}, {2, false}} {
		rec := record{ID: id, Phase: phaseSealed}
		for n := range 3 {
			rec.Packages = append(rec.Packages, &pkgRecord{N: n, Off: first, Len: 1, DSN: n == 2,
				Rcpts: []*rcptRecord{{Addr: "b@example.test", State: rcptPending}}})
		}
		rec.Packages[1].Wait = &Wait{For: []int{tc.on}}
		payload, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		_, err = decodeState(id, Envelope{}, stateFrame{payload: payload, at: at, end: at + 100}, framesAt)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, ErrBadSpoolFile) {
			t.Errorf("package 1 waiting for %d: %v, want ok %v", tc.on, err, tc.ok)
		}
	}
}

// TestPkgByNumber: record.pkg finds a sealed package by its number wherever it stands in
// Packages, the first place included (worker.go:290: the search's "not found" made to take
// the first place too).
func TestPkgByNumber(t *testing.T) {
	rec := &record{}
	for _, n := range []int{1, 0, 2} {
		rec.Packages = append(rec.Packages, &pkgRecord{N: n})
	}
	for want, at := range []int{1, 0, 2} {
		if p := rec.pkg(want); p != rec.Packages[at] {
			t.Errorf("pkg(%d) = %+v, want the package at %d", want, p, at)
		}
	}
	if p := rec.pkg(3); p != nil {
		t.Errorf("pkg(3) = %+v, want nil", p)
	}
}

// fourPackages seals each message as one package per recipient.
type fourPackages struct{}

func (fourPackages) Process(_ context.Context, _ string, env Envelope, body io.Reader) (*Sealed, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	s := &Sealed{}
	for _, r := range env.RcptTo {
		s.Packages = append(s.Packages, Package{MailFrom: env.MailFrom, RcptTo: []string{r}, Body: bytes.NewReader(b)})
	}
	return s, nil
}

// TestGroupCommitShared: results that are applied while another result's commit syncs share
// the next commit: with four transactions of a message ending while the first result's
// fdatasync is held back, their results take two syncs in all, not one each (worker.go:515, a
// commit that succeeded not counted as durable; :506, a result that the leader's commit
// covered exactly leading a commit of its own, which only shows when the leader is not the
// last result applied: the runtime decides which waiter wakes first, about half the time, so
// the scenario runs 30 times).
func TestGroupCommitShared(t *testing.T) {
	for range 30 {
		groupCommitOnce(t)
	}
}

func groupCommitOnce(t *testing.T) {
	var logs lockedbuf.Buffer
	e451 := &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
	d := &scriptedDeliverer{replies: []error{e451}}
	var outcomes atomic.Int32
	var held atomic.Bool
	rcpts := []string{"b@example.test", "c@example.test", "d@example.test", "e@example.test"}
	fsys, st := runScripted(t, fourPackages{}, d, rcpts, &logs, func(o *Options) {
		o.PackageConcurrency = len(rcpts)
		o.Outcome = func(Outcome) { outcomes.Add(1) }
		d.fs.beforeSync = func() {
			d.mu.Lock()
			started := d.n > 0
			d.mu.Unlock()
			// The first sync after the transactions began is the first result's commit: hold it
			// until every transaction's result is applied (Outcome is told just before).
			if !started || !held.CompareAndSwap(false, true) {
				return
			}
			for deadline := time.Now().Add(10 * time.Second); outcomes.Load() < int32(len(rcpts)) && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}
	})
	if st.Delivered != len(rcpts) {
		t.Fatalf("stats %+v", st)
	}
	ev := fsys.ev.get()
	var at []int
	for i, e := range ev {
		if strings.HasPrefix(e, "deliver") {
			at = append(at, i)
		}
	}
	if len(at) != len(rcpts)+1 {
		t.Fatalf("events %q, want %d attempts", ev, len(rcpts)+1)
	}
	if syncs := at[len(rcpts)] - at[len(rcpts)-1] - 1; syncs != 2 {
		t.Fatalf("%d syncs for the four results, want 2 (the first result's, then the other three's together): %q", syncs, ev)
	}
}

// TestWaitFailedBeforeRecorded: a spool state in which a package waited for has failed while
// the package waiting for it is still pending (written by a version that did not fail them
// together) fails the waiting package when the message is next worked on, with a DSN, and
// never sends it (worker.go:414: without it the wait, failed, no longer holds the package back,
// and it went out), counting the recipient as failed (:416, not covered before: the commit's
// success taken for a failure skipped the count).
func TestWaitFailedBeforeRecorded(t *testing.T) {
	dir := t.TempDir()
	sp, err := openSpool(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := spoolMessage(t, sp, "Subject: x\r\n\r\nbody\r\n")
	rec.Phase = phaseSealed
	expires := time.Now().Add(time.Hour)
	rec.Packages = []*pkgRecord{
		{N: 0, MailFrom: "a@example.test", Silent: true, ExpiresAt: expires,
			Rcpts: []*rcptRecord{{Addr: "journal@example.test", State: rcptFailed, Status: "5.1.1", Diag: "smtp; 550 5.1.1 no"}}},
		{N: 1, MailFrom: "a@example.test", ExpiresAt: expires, Wait: &Wait{For: []int{0}},
			Rcpts: []*rcptRecord{{Addr: "b@example.test", State: rcptPending}}},
	}
	for _, p := range rec.Packages {
		rec.unwritten = append(rec.unwritten, newPackage{rec: p, body: strings.NewReader("To: x\r\n\r\nsealed\r\n")})
	}
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	sp.unlock()

	d := &scriptedDeliverer{ev: &events{}}
	q, stop := runQueue(t, Options{Dir: dir, Hostname: "relay.example.test", Retry: []time.Duration{time.Millisecond}}, onePackage{}, d, nil)
	defer stop()
	waitDrained(t, q, func() string { return fmt.Sprintf("events %q", d.ev.get()) })
	if ev := d.ev.get(); !slices.Equal(ev, []string{"deliver from <>"}) {
		t.Fatalf("attempts %q, want only the DSN", ev)
	}
	if st := q.Stats(); st.Failed != 1 || st.DSNs != 1 {
		t.Errorf("stats %+v, want the waiting package's recipient failed and one DSN", st)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dsns) != 1 || !strings.Contains(d.dsns[0], "Final-Recipient: rfc822; b@example.test") || strings.Contains(d.dsns[0], "journal@") {
		t.Fatalf("DSNs %q, want one naming b@example.test and not the journal", d.dsns)
	}
}
