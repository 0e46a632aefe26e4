package smtpfront

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/queue"
)

// fileSpool is a test Spooler that keeps each message as a file in dir,
// written the way the real queue does (temp file, fsync, rename), and
// removes the temp file when reading the body fails.
type fileSpool struct {
	dir string
	err error // returned instead of storing, if set

	mu   sync.Mutex
	n    int
	envs map[string]queue.Envelope
}

func newFileSpool(t testing.TB) *fileSpool {
	f := &fileSpool{dir: t.TempDir(), envs: make(map[string]queue.Envelope)}
	// A connection the server closed may still be removing its .tmp- file when the test ends;
	// wait for it (cleanups run last first, so this runs before the directory is removed).
	t.Cleanup(func() {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			tmps, _ := filepath.Glob(filepath.Join(f.dir, ".tmp-*"))
			if len(tmps) == 0 {
				return
			}
		}
	})
	return f
}

func (f *fileSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	if f.err != nil {
		// A real spool reads before it notices the disk is full.
		_, _ = io.Copy(io.Discard, body)
		return "", f.err
	}
	tmp, err := os.CreateTemp(f.dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("failed to create temp file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, body); err != nil {
		tmp.Close()
		return "", fmt.Errorf("failed to write %q: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("failed to sync %q: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("failed to close %q: %w", tmp.Name(), err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	id := fmt.Sprintf("m%04d", f.n)
	if err := os.Rename(tmp.Name(), filepath.Join(f.dir, id)); err != nil {
		return "", fmt.Errorf("failed to rename %q: %w", tmp.Name(), err)
	}
	f.envs[id] = env
	return id, nil
}

// messages returns the committed messages by id.
func (f *fileSpool) messages(t testing.TB) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string][]byte)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			continue // being written, or about to be removed: not committed
		}
		b, err := os.ReadFile(filepath.Join(f.dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = b
	}
	return out
}

func (f *fileSpool) envelope(id string) queue.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.envs[id]
}

// testPolicy allows the senders listed (per auth user "" = anyone) and
// refuses the recipients listed with the error given.
type testPolicy struct {
	senders   map[string]bool
	rcptErr   map[string]error
	senderErr error // returned for every sender, if set
}

func newTestPolicy() *testPolicy {
	return &testPolicy{
		senders: map[string]bool{"alice@example.test": true, "": true},
		rcptErr: map[string]error{},
	}
}

func (p *testPolicy) CheckSender(_ context.Context, from, _ string) error {
	if p.senderErr != nil {
		return p.senderErr
	}
	if !p.senders[from] {
		return fmt.Errorf("failed to find sender %q in /etc/appliance/secret.toml: %w", from, ErrSenderRefused)
	}
	return nil
}

func (p *testPolicy) CheckRecipient(_ context.Context, rcpt string) error {
	return p.rcptErr[rcpt]
}

type testServer struct {
	srv   *Server
	addr  string
	spool *fileSpool
	log   *strings.Builder
	logMu *sync.Mutex
}

type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func startServer(t testing.TB, opts Options, spool *fileSpool, policy Policy) *testServer {
	t.Helper()
	ts := &testServer{spool: spool, log: &strings.Builder{}, logMu: &sync.Mutex{}}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(syncWriter{ts.logMu, ts.log}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if opts.Hostname == "" {
		opts.Hostname = "front.example.test"
	}
	ts.srv = New(opts, spool, policy)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		ts.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v", err)
		}
	})
	return ts
}

func (ts *testServer) logText() string {
	ts.logMu.Lock()
	defer ts.logMu.Unlock()
	return ts.log.String()
}

// rawConn speaks SMTP by hand, for input go-smtp's client refuses to send.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	rc := &rawConn{t: t, c: c, r: bufio.NewReader(c)}
	if got := rc.reply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("greeting = %q", got)
	}
	return rc
}

// reply reads one (possibly multi-line) reply and returns its last line.
func (rc *rawConn) reply() string {
	rc.t.Helper()
	for {
		line, err := rc.r.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("failed to read reply: %v (partial %q)", err, line)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 || line[3] != '-' {
			return line
		}
	}
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("failed to write: %v", err)
	}
}

// cmd sends one line and returns the reply's last line.
func (rc *rawConn) cmd(line string) string {
	rc.t.Helper()
	rc.send(line + "\r\n")
	return rc.reply()
}

// code returns "NNN X.Y.Z" of a reply line.
func code(line string) string {
	f := strings.Fields(line)
	if len(f) < 2 {
		return line
	}
	return f[0] + " " + f[1]
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
