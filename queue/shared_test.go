package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// sharedBody is a package body of its own head followed by a tail shared with other packages
// (SharedBody), the way sealed packages share their encrypted content.
type sharedBody struct {
	head  string
	tail  *sharedTail
	split bool // offer SplitBody
}

type sharedTail struct{ b []byte }

func (t *sharedTail) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(t.b)
	return int64(n), err
}

func (s *sharedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, s.head)
	if err != nil {
		return int64(n), err
	}
	m, err := s.tail.WriteTo(w)
	return int64(n) + m, err
}

func (s *sharedBody) SplitBody() (head, shared io.WriterTo) {
	if !s.split {
		return s, nil
	}
	return strings.NewReader(s.head), s.tail
}

func (s *sharedBody) bytes() []byte { return append([]byte(s.head), s.tail.b...) }

// sealShared gives rec packages the way sealInto does: three share tail a, one has tail b of
// its own, one does not split.
func sealShared(rec *record, a, b *sharedTail) []*sharedBody {
	bodies := []*sharedBody{
		{head: "To: one\r\n\r\n", tail: a, split: true},
		{head: "To: two, a longer head\r\n\r\n", tail: a, split: true},
		{head: "To: three\r\n\r\n", tail: b, split: true},
		{head: "To: four\r\n\r\n", tail: a, split: true},
		{head: "To: five\r\n\r\n", tail: a, split: false},
	}
	addShared(rec, bodies)
	return bodies
}

// addShared seals rec into a package per body, to its first envelope recipient, each body
// spooled with its shared part apart when it splits; the caller commits rec.
func addShared(rec *record, bodies []*sharedBody) {
	rec.Phase = phaseSealed
	for _, body := range bodies {
		p := &pkgRecord{N: len(rec.Packages), MailFrom: rec.Envelope.MailFrom, Mode: "encrypted", Profile: "compat",
			Rcpts: []*rcptRecord{{Addr: rec.Envelope.RcptTo[0], State: rcptPending}}}
		np := newPackage{rec: p, body: body}
		if h, sh := body.SplitBody(); sh != nil {
			np.body, np.shared = h, sh
		}
		rec.Packages = append(rec.Packages, p)
		rec.unwritten = append(rec.unwritten, np)
	}
}

func readPackage(t *testing.T, data []byte, p *pkgRecord) []byte {
	t.Helper()
	out := append([]byte(nil), data[p.Off:p.Off+p.Len]...)
	if p.Shared != nil {
		out = append(out, data[p.Shared.Off:p.Shared.Off+p.Shared.Len]...)
	}
	return out
}

// newTestSpool opens a spool in a new directory, unlocked when the test ends.
func newTestSpool(t testing.TB) *spool {
	t.Helper()
	sp, err := openSpool(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.unlock)
	return sp
}

// spoolMessage writes a message of body from a@example.test to b@example.test into sp, as
// Accept does, and returns its record: received, not sealed.
func spoolMessage(t testing.TB, sp *spool, body string) *record {
	t.Helper()
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	id := newID(time.Now())
	fs, err := sp.writeMessage(context.Background(), id, env, strings.NewReader(body), 0)
	if err != nil {
		t.Fatal(err)
	}
	return &record{ID: id, Phase: phaseReceived, Envelope: env, file: fs}
}

// runQueue opens a queue with opts, p and d, lets prepare (when not nil) change it before any
// worker runs, and runs it; stop ends it.
func runQueue(t *testing.T, opts Options, p Processor, d Deliverer, prepare func(*Queue)) (q *Queue, stop func()) {
	t.Helper()
	q, err := Open(opts, p, d)
	if err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		prepare(q)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	return q, func() { cancel(); <-done; q.Close() }
}

// waitDrained waits until q holds no message, for at most 20 s; the test fails then, with
// q's Stats and what describe says.
func waitDrained(t *testing.T, q *Queue, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for q.Stats().Messages > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not finished: %+v; %s", q.Stats(), describe())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestSharedPartSpooledOnce: a part several packages share is in the file once, each package
// reads back whole (head and shared part), and so it does after a reload.
func TestSharedPartSpooledOnce(t *testing.T) {
	sp := newTestSpool(t)
	rec := spoolMessage(t, sp, "body\r\n")
	id, fs := rec.ID, rec.file
	a := &sharedTail{b: bytes.Repeat([]byte("shared content A\r\n"), 4000)}
	b := &sharedTail{b: bytes.Repeat([]byte("shared content B\r\n"), 1000)}
	bodies := sealShared(rec, a, b)
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(sp.msgPath(id))
	if err != nil {
		t.Fatal(err)
	}
	// Packages 0, 1 and 3 share a; package 4 does not split and carries its own copy.
	if n := bytes.Count(data, a.b); n != 2 {
		t.Errorf("shared part A is in the file %d times, want 2 (once shared, once in the package that does not split)", n)
	}
	if n := bytes.Count(data, b.b); n != 1 {
		t.Errorf("shared part B is in the file %d times, want 1", n)
	}
	if max := int64(len(a.b)*2 + len(b.b) + 4096); fs.end > max {
		t.Errorf("file of %d bytes, want at most %d", fs.end, max)
	}
	for reload := range 2 {
		if reload == 1 {
			recs, err := sp.recover(slog.New(slog.DiscardHandler))
			if err != nil || len(recs) != 1 {
				t.Fatalf("recover: %d records, %v", len(recs), err)
			}
			rec = recs[0]
		}
		for i, p := range rec.Packages {
			if got := readPackage(t, data, p); !bytes.Equal(got, bodies[i].bytes()) {
				t.Errorf("reload %d: package %d reads back %d bytes, want %d", reload, i, len(got), len(bodies[i].bytes()))
			}
			if (p.Shared != nil) != bodies[i].split {
				t.Errorf("reload %d: package %d shared part %+v, split %v", reload, i, p.Shared, bodies[i].split)
			}
			f, r, err := sp.openPackage(rec, p)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			f.Close()
			if err != nil || !bytes.Equal(got, bodies[i].bytes()) {
				t.Errorf("reload %d: openPackage %d: %d bytes (%v)", reload, i, len(got), err)
			}
			if p.Mode != "encrypted" || p.Profile != "compat" {
				t.Errorf("reload %d: package %d mode %q profile %q", reload, i, p.Mode, p.Profile)
			}
		}
	}
}

// TestSharedCutAnywhere: a file cut at any byte loads as its last whole commit, and a package
// of a loaded commit reads back whole, shared part included; a damaged shared part undoes the
// commit that wrote it.
func TestSharedCutAnywhere(t *testing.T) {
	sp := newTestSpool(t)
	rec := spoolMessage(t, sp, "body\r\n")
	id, fs := rec.ID, rec.file
	ends := []int64{fs.end}
	bodies := sealShared(rec, &sharedTail{b: []byte(strings.Repeat("A", 300))}, &sharedTail{b: []byte(strings.Repeat("B", 200))})
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	ends = append(ends, fs.end)
	rec.Packages[0].Rcpts[0].State = rcptDelivered
	if err := sp.commit(rec); err != nil {
		t.Fatal(err)
	}
	ends = append(ends, fs.end)
	data, err := os.ReadFile(sp.msgPath(id))
	if err != nil {
		t.Fatal(err)
	}
	for cut := ends[0]; cut <= int64(len(data)); cut++ {
		got, end, err := parseMessage(id, bytes.NewReader(data[:cut]), cut)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := 0
		for i, e := range ends {
			if e <= cut {
				want = i
			}
		}
		if end != ends[want] {
			t.Fatalf("cut at %d: loaded the commit ending at %d, want %d", cut, end, ends[want])
		}
		if (want == 0) != (got.Phase == phaseReceived) {
			t.Fatalf("cut at %d: phase %q", cut, got.Phase)
		}
		for i, p := range got.Packages {
			if b := readPackage(t, data[:end], p); !bytes.Equal(b, bodies[i].bytes()) {
				t.Fatalf("cut at %d: package %d reads %q", cut, i, b)
			}
		}
	}

	// The sealing commit is the last one and its shared part is damaged: the message is
	// received again (it will be sealed anew), not sealed with a broken package.
	sealedData := bytes.Clone(data[:ends[1]])
	var st record
	frames := scanFrames(bytes.NewReader(sealedData), fs.body+fs.bodyLen, ends[1], id, true)
	if err := json.Unmarshal(frames[len(frames)-1].payload, &st); err != nil {
		t.Fatal(err)
	}
	sh := st.Packages[0].Shared
	if sh == nil {
		t.Fatal("package 0 has no shared part")
	}
	sealedData[sh.Off+sh.Len/2] ^= 1
	got, end, err := parseMessage(id, bytes.NewReader(sealedData), ends[1])
	if err != nil {
		t.Fatal(err)
	}
	if got.Phase != phaseReceived || end != ends[0] {
		t.Fatalf("damaged shared part: loaded phase %q ending at %d, want received at %d", got.Phase, end, ends[0])
	}
}

type sharedProc struct{ bodies []*sharedBody }

func (p *sharedProc) Process(_ context.Context, _ string, env Envelope, body io.Reader) (*Sealed, error) {
	io.Copy(io.Discard, body)
	s := &Sealed{}
	for i, b := range p.bodies {
		s.Packages = append(s.Packages, Package{MailFrom: env.MailFrom, RcptTo: env.RcptTo[i : i+1], Body: b,
			Mode: "encrypted", Profile: "compat"})
	}
	return s, nil
}

// recordingDeliverer keeps what it is given and the size of the message's spool file then.
type recordingDeliverer struct {
	dir  string
	mu   sync.Mutex
	got  map[string][]byte
	size int64
}

func (d *recordingDeliverer) Deliver(_ context.Context, _ string, rcptTo []string, body io.Reader) ([]RcptResult, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	ents, _ := os.ReadDir(filepath.Join(d.dir, "msg"))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			d.size = max(d.size, fi.Size())
		}
	}
	d.got[rcptTo[0]] = b
	out := make([]RcptResult, len(rcptTo))
	for i, r := range rcptTo {
		out[i].Rcpt = r
	}
	return out, nil
}

// TestQueueSpoolsSharedOnce: the queue takes a package body's shared part from SharedBody, so
// a message of many packages sharing their content spools that content once, and delivers each
// package whole.
func TestQueueSpoolsSharedOnce(t *testing.T) {
	dir := t.TempDir()
	tail := &sharedTail{b: bytes.Repeat([]byte("0123456789abcdef"), 1<<14)} // 256 KB
	p := &sharedProc{}
	var rcpts []string
	for i := range 8 {
		r := fmt.Sprintf("r%d@example.test", i)
		rcpts = append(rcpts, r)
		p.bodies = append(p.bodies, &sharedBody{head: "To: " + r + "\r\n\r\n", tail: tail, split: true})
	}
	d := &recordingDeliverer{dir: dir, got: map[string][]byte{}}
	q, stop := runQueue(t, Options{Dir: dir, Hostname: "relay.example.test"}, p, d, nil)
	defer stop()
	if _, err := q.Accept(context.Background(), Envelope{MailFrom: "a@example.test", RcptTo: rcpts}, strings.NewReader("body\r\n")); err != nil {
		t.Fatal(err)
	}
	waitDrained(t, q, func() string { return "" })
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range rcpts {
		if !bytes.Equal(d.got[r], p.bodies[i].bytes()) {
			t.Errorf("%s got %d bytes, want %d", r, len(d.got[r]), len(p.bodies[i].bytes()))
		}
	}
	// One copy of the shared part and the states of 8 results; a copy per package would be 2 MB.
	if max := int64(len(tail.b) + 64<<10); d.size == 0 || d.size > max {
		t.Errorf("spool file of %d bytes while delivering 8 packages sharing %d bytes, want at most %d", d.size, len(tail.b), max)
	}
}

// BenchmarkCommitShared is the sealing commit of a 1 MB message to 1 To + 20 Bcc (21 packages of
// about 1.4 MB that share all but their heads), with the shared part spooled once (shared) and,
// for comparison, in every package (copies). spool-MB/msg is what the commit wrote.
func BenchmarkCommitShared(b *testing.B) {
	tail := &sharedTail{b: bytes.Repeat([]byte(strings.Repeat("A", 76)+"\r\n"), 1400<<10/78)}
	body := strings.Repeat("0123456789abcdef\r\n", 1<<20/18)
	for _, split := range []bool{true, false} {
		name := "shared"
		if !split {
			name = "copies"
		}
		b.Run(name, func(b *testing.B) {
			sp := newTestSpool(b)
			var written int64
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				rec := spoolMessage(b, sp, body)
				fs := rec.file
				bodies := make([]*sharedBody, 21)
				for i := range bodies {
					bodies[i] = &sharedBody{head: fmt.Sprintf("To: u%02d@example.test\r\n\r\n", i), tail: tail, split: split}
				}
				addShared(rec, bodies)
				if err := sp.commit(rec); err != nil {
					b.Fatal(err)
				}
				written += fs.end - fs.body - fs.bodyLen
				if err := sp.remove(rec); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(written)/float64(b.N)/(1<<20), "spool-MB/msg")
		})
	}
}
