package queue_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/queue"
)

// envProc records the envelope and body each Process call gets, and seals the body as one
// package.
type envProc struct {
	mu   sync.Mutex
	envs []queue.Envelope
	body []string
}

func (p *envProc) Process(_ context.Context, _ string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.envs = append(p.envs, env)
	p.body = append(p.body, string(b))
	p.mu.Unlock()
	return &queue.Sealed{Packages: []queue.Package{pkg(env.MailFrom, env.RcptTo, b)}}, nil
}

func (p *envProc) got() ([]queue.Envelope, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]queue.Envelope(nil), p.envs...), append([]string(nil), p.body...)
}

// spoolFiles lists the files in dir/tmp (kept files for reuse aside) and dir/msg.
func spoolFiles(t *testing.T, dir string) (tmp, msg []string) {
	t.Helper()
	for _, sub := range []string{"tmp", "msg"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if sub == "tmp" && !strings.HasPrefix(e.Name(), "free-") {
				tmp = append(tmp, e.Name())
			} else if sub == "msg" {
				msg = append(msg, e.Name())
			}
		}
	}
	return tmp, msg
}

func stage(t *testing.T, q *queue.Queue, seq int) *queue.Staged {
	t.Helper()
	st, err := q.Stage(context.Background(), queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, strings.NewReader(testMessage(seq)))
	if err != nil {
		t.Fatalf("Stage: %v", err)
	}
	b, err := io.ReadAll(st.Body())
	if err != nil || string(b) != testMessage(seq) || st.Size() != int64(len(b)) {
		t.Fatalf("staged body %q (size %d), %v; want %q", b, st.Size(), err, testMessage(seq))
	}
	return st
}

// TestStageCommit: a staged message is read back from the spool, and once committed is worked
// like an accepted one with the class the check gave it in its envelope; a recycled spool file
// is read back as well.
func TestStageCommit(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t)
	p := &envProc{}
	q, _ := running(t, baseOpts(dir), p, newDeliverer(t, sink))
	accept(t, q, 1, sender, "b@example.test")
	waitEmpty(t, q, 10*time.Second) // its file is kept in tmp/ for the next message
	for i, class := range []string{"plain", ""} {
		st := stage(t, q, 2+i)
		if tmp, msg := spoolFiles(t, dir); len(tmp)+len(msg) > 1 || len(msg) != 0 {
			t.Fatalf("staged message in tmp/ %v, msg/ %v; want one file in tmp/ or a reused one", tmp, msg)
		}
		if _, err := st.Commit(class); err != nil {
			t.Fatal(err)
		}
		waitEmpty(t, q, 10*time.Second)
		envs, bodies := p.got()
		if last := envs[len(envs)-1]; last.Class != class || bodies[len(bodies)-1] != testMessage(2+i) {
			t.Errorf("processed class %q body %q, want %q and the staged body", last.Class, bodies[len(bodies)-1], class)
		}
	}
	if n := len(sink.Messages()); n != 3 {
		t.Errorf("delivered %d, want 3", n)
	}
	if s := q.Stats(); s.Accepted != 3 {
		t.Errorf("accepted %d, want 3", s.Accepted)
	}
}

// TestStageDiscard: a discarded staged message leaves nothing in the spool and is never worked.
func TestStageDiscard(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t)
	q, _ := running(t, baseOpts(dir), &envProc{}, newDeliverer(t, sink))
	st := stage(t, q, 1)
	st.Discard()
	st.Discard()
	if _, err := st.Commit("plain"); err == nil {
		t.Error("Commit after Discard succeeded")
	}
	if tmp, msg := spoolFiles(t, dir); len(tmp)+len(msg) != 0 {
		t.Errorf("after Discard: tmp/ %v, msg/ %v", tmp, msg)
	}
	if s := q.Stats(); s.Accepted != 0 || s.Messages != 0 {
		t.Errorf("stats after Discard: %+v", s)
	}
	if n := len(sink.Messages()); n != 0 {
		t.Errorf("delivered %d", n)
	}
}

// TestStageCrash: a crash between staging and the commit (the process gone, the staged file
// left) loses nothing that was acknowledged and keeps nothing that was not: Open removes the
// staged file; a committed message keeps its class across the restart.
func TestStageCrash(t *testing.T) {
	dir := t.TempDir()
	sink := newSink(t)
	q, err := queue.Open(baseOpts(dir), &envProc{}, newDeliverer(t, sink))
	if err != nil {
		t.Fatal(err)
	}
	stage(t, q, 1) // never committed
	st := stage(t, q, 2)
	if _, err := st.Commit("client-encrypted"); err != nil {
		t.Fatal(err)
	}
	if tmp, msg := spoolFiles(t, dir); len(tmp) != 1 || len(msg) != 1 {
		t.Fatalf("before the restart: tmp/ %v, msg/ %v", tmp, msg)
	}
	q.Close() // as a crash: the staged file stays in tmp/
	p := &envProc{}
	q2, _ := running(t, baseOpts(dir), p, newDeliverer(t, sink))
	waitEmpty(t, q2, 10*time.Second)
	envs, bodies := p.got()
	if len(envs) != 1 || envs[0].Class != "client-encrypted" || bodies[0] != testMessage(2) {
		t.Fatalf("after the restart processed %+v %q; want the committed message with its class", envs, bodies)
	}
	if tmp, _ := spoolFiles(t, dir); len(tmp) != 0 {
		t.Errorf("staged file not removed on Open: %v", tmp)
	}
	if msgs := sink.Messages(); len(msgs) != 1 {
		t.Errorf("delivered %d messages, want 1", len(msgs))
	}
}

// TestStageRefusals: Stage refuses as Accept does.
func TestStageRefusals(t *testing.T) {
	dir := t.TempDir()
	opts := baseOpts(dir)
	opts.MaxMessageBytes = 10
	q, err := queue.Open(opts, &envProc{}, newDeliverer(t, newSink(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	if _, err := q.Stage(context.Background(), queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}, strings.NewReader(testMessage(1))); err == nil || !strings.Contains(err.Error(), queue.ErrMessageTooBig.Error()) {
		t.Errorf("over the limit: %v", err)
	}
	if _, err := q.Stage(context.Background(), queue.Envelope{MailFrom: sender}, strings.NewReader("x")); err != queue.ErrNoRecipients {
		t.Errorf("no recipients: %v", err)
	}
	if tmp, msg := spoolFiles(t, dir); len(tmp)+len(msg) != 0 {
		t.Errorf("after refusals: tmp/ %v, msg/ %v", tmp, msg)
	}
}
