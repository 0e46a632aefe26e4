package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
	"appliance/pipeline"
	"appliance/smtpfront"
)

func TestFatalAtStart(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fatal bool
	}{
		{name: "ok token missing waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrTokenNotFound}},
		{name: "ok token gone waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrTokenGone}},
		{name: "ok module not initialisable waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrModule, Err: errors.New("CKR_GENERAL_ERROR")}},
		{name: "fail module file missing", err: &hsm.Error{Op: "open", Kind: hsm.ErrModule, Err: &fs.PathError{Op: "stat", Path: "/x.so", Err: fs.ErrNotExist}}, fatal: true},
		{name: "fail wrong PIN", err: &hsm.Error{Op: "open", Kind: hsm.ErrPINIncorrect}, fatal: true},
		{name: "fail bad setting", err: &hsm.Error{Op: "open", Kind: hsm.ErrInvalidArgument}, fatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fatalAtStart(tt.err); got != tt.fatal {
				t.Errorf("fatalAtStart(%v) = %v, want %v", tt.err, got, tt.fatal)
			}
		})
	}
}

// lockedLog collects the supervisor's log lines.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) count(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), "msg=\""+msg+"\"")
}

// moveToken takes the test binary's token directory away and returns the function that puts it
// back (also run at cleanup).
func moveToken(t *testing.T, env *softhsmtest.Env) func() {
	t.Helper()
	away := env.TokenDir + ".away"
	if err := os.Rename(env.TokenDir, away); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if err := os.Rename(away, env.TokenDir); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func startSupervisor(t *testing.T, env *softhsmtest.Env, log *lockedLog, onUp func()) *tokenSupervisor {
	t.Helper()
	cfg := hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 2, PoolTimeout: 5 * time.Second}
	s, err := newTokenSupervisor(supervisorOptions{
		Open:    func() (*hsm.Token, error) { return hsm.Open(cfg) },
		MinWait: 20 * time.Millisecond, MaxWait: 100 * time.Millisecond,
		OnUp: onUp,
		Log:  slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitHealthy(t *testing.T, s *tokenSupervisor) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still down 10s after the token came back: %v", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sign(s *tokenSupervisor) error {
	ctx := context.Background()
	signer, err := s.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		return err
	}
	d := sha256.Sum256([]byte("x"))
	_, err = signer.Sign(rand.Reader, d[:], crypto.SHA256)
	return err
}

// The token goes away under a running supervisor and comes back: one "hsm down", fast temporary
// failures meanwhile, reconnection, one "hsm up" and the OnUp call.
func TestSupervisorOutage(t *testing.T) {
	env := softhsmtest.Setup(t)
	log := &lockedLog{}
	var ups atomic.Int32
	s := startSupervisor(t, env, log, func() { ups.Add(1) })
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy at start: %v", err)
	}
	if err := sign(s); err != nil {
		t.Fatalf("sign: %v", err)
	}
	key, err := s.NewContentKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	restore := moveToken(t, env)
	err = sign(s)
	if !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("sign with the token gone: %v, want ErrTokenGone", err)
	}
	herr := s.Healthy()
	if !errors.Is(herr, errHSMDown) || !hsm.IsTemporary(herr) {
		t.Fatalf("Healthy with the token gone: %v, want a temporary errHSMDown", herr)
	}
	// While down, work fails at once and says so, without going near the token.
	for i := range 3 {
		if _, err := s.NewContentKey(context.Background()); !errors.Is(err, errHSMDown) || !hsm.IsTemporary(err) {
			t.Fatalf("NewContentKey %d while down: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // several failed reconnects
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign after recovery: %v", err)
	}
	// A key from before the loss fails, but that is old news: the token stays up.
	var buf bytes.Buffer
	if err := key.EncryptCBC(context.Background(), make([]byte, 16), strings.NewReader("x"), &buf); !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("key from before the reconnect: %v, want ErrTokenGone", err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("a stale key's failure took the token down: %v", err)
	}
	if down, up := log.count("hsm down"), log.count("hsm up"); down != 1 || up != 1 {
		t.Errorf("%d \"hsm down\" and %d \"hsm up\" lines, want 1 each", down, up)
	}
	if n := ups.Load(); n != 1 {
		t.Errorf("OnUp called %d times, want 1", n)
	}
}

// Without its token at start the supervisor starts down, with SHA-1 assumed for OAEP, and comes
// up when the token appears.
func TestSupervisorMissingAtStart(t *testing.T) {
	env := softhsmtest.Setup(t)
	restore := moveToken(t, env)
	log := &lockedLog{}
	s := startSupervisor(t, env, log, nil)
	if err := s.Healthy(); !errors.Is(err, errHSMDown) {
		t.Fatalf("Healthy without a token: %v", err)
	}
	if _, err := s.Signer(context.Background(), "pkcs11:object=alice"); !errors.Is(err, errHSMDown) || !hsm.IsTemporary(err) {
		t.Fatalf("Signer without a token: %v", err)
	}
	if h := s.OAEPHash(); h != crypto.SHA1 {
		t.Errorf("OAEPHash before the token was seen: %v, want SHA-1", h)
	}
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign once the token appeared: %v", err)
	}
	if log.count("hsm down") != 1 || log.count("hsm up") != 1 {
		t.Errorf("log:\n%s", log.b.String())
	}
}

type fixedHealth struct{ err error }

func (f fixedHealth) Healthy() error { return f.err }

// Under hsm.require_up the front end answers MAIL with 451 4.3.0 while the token is down.
func TestRequireHSM(t *testing.T) {
	p := requireHSM{hsm: fixedHealth{&hsmDownError{cause: errors.New("token gone")}}}
	err := p.CheckSender(context.Background(), "alice@example.test", "")
	r := smtpfront.Reply(smtpfront.StageMail, err)
	if r == nil || r.Code != 451 || fmt.Sprint(r.EnhancedCode) != "[4 3 0]" {
		t.Fatalf("reply %v, want 451 4.3.0", r)
	}
	if strings.Contains(r.Message, "token") {
		t.Errorf("reply %q names the token", r.Message)
	}
}

// A different token under the same label, whose PIN is not ours, keeps the supervisor down and
// says why; putting the right token back brings it up.
func TestSupervisorWrongPINAfterTokenChange(t *testing.T) {
	env := softhsmtest.Setup(t)
	log := &lockedLog{}
	s := startSupervisor(t, env, log, nil)
	restore := moveToken(t, env)

	// The replacement: same label, another PIN, in the directory the module reads.
	if err := os.Mkdir(env.TokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+env.TokenDir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", softhsmtest.TokenLabel, "--so-pin", "5678", "--pin", "987654")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v: %s", err, out)
	}

	if err := sign(s); !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("sign after the token changed: %v, want ErrTokenGone", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(s.Healthy(), hsm.ErrPINIncorrect) {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy with a token that refuses the PIN: %v, want ErrPINIncorrect", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !hsm.IsTemporary(s.Healthy()) {
		t.Errorf("a refused PIN at run time must defer work, not fail it: %v", s.Healthy())
	}
	// The state changes before its log line is written: give the line a moment.
	for log.count("hsm still down") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no \"hsm still down\" line naming the new cause")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := os.RemoveAll(env.TokenDir); err != nil {
		t.Fatal(err)
	}
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign with the right token back: %v", err)
	}
}

// A wrapped key the token refuses is the message's fault: pipeline.ErrWrappedKey, and the token
// stays up.
func TestSupervisorUnwrap(t *testing.T) {
	env := softhsmtest.Setup(t)
	s := startSupervisor(t, env, &lockedLog{}, nil)
	garbage := make([]byte, 256)
	rand.Read(garbage)
	tests := []struct {
		name    string
		wrapped []byte
		oaep    crypto.Hash
	}{
		{name: "fail garbage", wrapped: garbage},
		{name: "fail empty", wrapped: nil},
		{name: "fail garbage with OAEP", wrapped: garbage, oaep: crypto.SHA1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UnwrapCEK(context.Background(), "pkcs11:object=list", tt.wrapped, tt.oaep)
			if !errors.Is(err, pipeline.ErrWrappedKey) {
				t.Fatalf("UnwrapCEK: %v, want ErrWrappedKey", err)
			}
			if err := s.Healthy(); err != nil {
				t.Fatalf("a bad wrapped key took the token down: %v", err)
			}
		})
	}
}
