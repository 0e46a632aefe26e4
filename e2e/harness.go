package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"appliance/internal/lockedbuf"
	"appliance/internal/softhsmtest"
)

// MainPackage is the import path of the daemon's main package.
const MainPackage = "appliance/cmd/appliance"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

// Build compiles the appliance binary once per test binary and returns its path. The binary is
// built without -race: it is the program under test, not the test. APPLIANCE_BIN names a binary
// built beforehand instead (CI builds it once for several test packages).
func Build(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("APPLIANCE_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			tb.Fatalf("binary does not exist: APPLIANCE_BIN=%q: %v", p, err)
		}
		return p
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "appliance-e2e-bin-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "appliance")
		cmd := exec.Command("go", "build", "-o", buildBin, MainPackage)
		cmd.Dir = softhsmtest.RepoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
	})
	if buildErr != nil {
		tb.Fatalf("binary does not build: go build %s: %v", MainPackage, buildErr)
	}
	return buildBin
}

// Cleanup removes the built binary; call it from TestMain after m.Run.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
}

// Config is the daemon's TOML configuration (the configuration reference) as the tests use it.
type Config struct {
	HSM       HSMConfig       `toml:"hsm"`
	SMTP      SMTPConfig      `toml:"smtp"`
	Relay     RelayConfig     `toml:"relay"`
	Spool     SpoolConfig     `toml:"spool"`
	Directory DirectoryConfig `toml:"directory"`
	Policy    PolicyConfig    `toml:"policy"`
	Queue     QueueConfig     `toml:"queue"`
	Log       LogConfig       `toml:"log"`
	Sender    []SenderConfig  `toml:"sender"`
	// Extra is TOML written after the rest (tables the struct does not model: [journal] ...).
	Extra string `toml:"-"`
}

// HSMConfig is [hsm].
type HSMConfig struct {
	Module      string `toml:"module"`
	Token       string `toml:"token"`
	PINFile     string `toml:"pin_file"`
	MaxSessions int    `toml:"max_sessions,omitempty"`
}

// SMTPConfig is [smtp].
type SMTPConfig struct {
	Listen          string `toml:"listen"`
	Hostname        string `toml:"hostname"`
	MaxMessageBytes int64  `toml:"max_message_bytes,omitempty"`
	MaxRecipients   int    `toml:"max_recipients,omitempty"`
}

// RelayConfig is [relay].
type RelayConfig struct {
	NextHop string `toml:"next_hop"`
}

// SpoolConfig is [spool].
type SpoolConfig struct {
	Dir string `toml:"dir"`
}

// DirectoryConfig is [directory].
type DirectoryConfig struct {
	Certs string `toml:"certs"`
	Roots string `toml:"roots"`
}

// PolicyConfig is [policy].
type PolicyConfig struct {
	Bcc         string `toml:"bcc"`
	MissingCert string `toml:"missing_cert"`
	Profile     string `toml:"profile"`
	SelfCopy    bool   `toml:"self_copy"`
	RID         string `toml:"rid,omitempty"` // "" is the default, issuer_serial
	// SignedOverEncrypted is policy.signed_over_encrypted; "" is the default, refuse.
	SignedOverEncrypted string `toml:"signed_over_encrypted,omitempty"`
	// HeaderProtection is policy.header_protection (RFC 9788); off by default.
	HeaderProtection bool `toml:"header_protection,omitempty"`
}

// QueueConfig is [queue].
type QueueConfig struct {
	Workers int      `toml:"workers"`
	Retry   []string `toml:"retry"`
	MaxAge  string   `toml:"max_age"`
}

// LogConfig is [log].
type LogConfig struct {
	Format string `toml:"format"`
}

// SenderConfig is one [[sender]].
type SenderConfig struct {
	Address string `toml:"address"`
	Key     string `toml:"key"`
	Cert    string `toml:"cert"`
}

// Sender is the configured sender of every test.
const Sender = "alice@example.test"

// NewConfig is the tests' standard configuration: SoftHSM2 token, the test PKI as directory, alice
// as the one sender, bcc individual, missing_cert reject, compat profile, a fresh spool and a free
// port, relaying to nextHop.
func NewConfig(tb testing.TB, env *softhsmtest.Env, nextHop string) Config {
	tb.Helper()
	return Config{
		HSM:       HSMConfig{Module: env.Module, Token: softhsmtest.TokenLabel, PINFile: env.PINFile, MaxSessions: 4},
		SMTP:      SMTPConfig{Listen: FreeAddr(tb), Hostname: "relay.example.test", MaxMessageBytes: 40 << 20, MaxRecipients: 100},
		Relay:     RelayConfig{NextHop: nextHop},
		Spool:     SpoolConfig{Dir: filepath.Join(tb.TempDir(), "spool")},
		Directory: DirectoryConfig{Certs: env.File("certs"), Roots: env.File("roots.pem")},
		Policy:    PolicyConfig{Bcc: "individual", MissingCert: "reject", Profile: "compat", SelfCopy: true},
		Queue:     QueueConfig{Workers: 2, Retry: []string{"1s", "2s"}, MaxAge: "1h"},
		Log:       LogConfig{Format: "json"},
		Sender:    []SenderConfig{{Address: Sender, Key: "pkcs11:token=appliance;object=alice", Cert: env.File("alice.chain.pem")}},
	}
}

// Write writes the configuration as TOML to a new file in dir and returns its path.
func (c Config) Write(dir string) (string, error) {
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return "", fmt.Errorf("failed to encode config: %w", err)
	}
	b.WriteString("\n" + c.Extra)
	f, err := os.CreateTemp(dir, "appliance-*.toml")
	if err != nil {
		return "", fmt.Errorf("failed to write config: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(b.Bytes()); err != nil {
		return "", fmt.Errorf("failed to write config: %w", err)
	}
	return f.Name(), nil
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Daemon is a running `appliance serve`.
type Daemon struct {
	Bin, ConfigPath, Addr string
	Env                   []string // extra environment, KEY=VALUE
	cmd                   *exec.Cmd
	logs                  *lockedbuf.Buffer
	done                  chan struct{}
	waitErr               error
}

// StartDaemon runs `appliance serve -config FILE` for cfg with SOFTHSM2_CONF set, waits until it
// greets on cfg.SMTP.Listen, and stops it when the test ends (SIGTERM, then SIGKILL). Its log is
// printed if the test failed.
func StartDaemon(tb testing.TB, env *softhsmtest.Env, cfg Config) *Daemon {
	tb.Helper()
	bin := Build(tb)
	path, err := cfg.Write(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	d := &Daemon{Bin: bin, ConfigPath: path, Addr: cfg.SMTP.Listen, Env: []string{"SOFTHSM2_CONF=" + env.Conf}}
	if err := d.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Stop()
		if tb.Failed() {
			tb.Logf("appliance serve log (%s):\n%s", d.ConfigPath, tail(d.Log(), 60))
		}
	})
	for try := 1; ; try++ {
		err := d.WaitReady(30 * time.Second)
		if err == nil {
			return d
		}
		if try < 3 && !d.Running() && TokenRace(d.Log()) {
			tb.Logf("appliance serve did not find the token (try %d); starting it again", try)
			time.Sleep(time.Duration(try) * 500 * time.Millisecond)
			if err := d.Start(); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		tb.Fatal(err)
	}
}

// TokenRace reports whether a failure message is SoftHSM2 tripping over itself: it rewrites the
// token file on login, and another process opening the token at that moment does not find it or
// fails to log in (CKR_GENERAL_ERROR). With several processes on one test token this happens now
// and then; it is the rig's HSM, not the appliance, so callers may try again.
func TokenRace(msg string) bool {
	return strings.Contains(msg, "could not find PKCS#11 token") ||
		strings.Contains(msg, "failed to open token") && strings.Contains(msg, "CKR_GENERAL_ERROR")
}

// Start starts the process (again, after Kill or Stop); the log continues.
func (d *Daemon) Start() error {
	if d.logs == nil {
		d.logs = &lockedbuf.Buffer{}
	}
	d.cmd = exec.Command(d.Bin, "serve", "-config", d.ConfigPath)
	d.cmd.Env = append(os.Environ(), d.Env...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		return fmt.Errorf("failed to start appliance serve: %w", err)
	}
	fmt.Fprintf(d.logs, "--- started pid %d\n", d.cmd.Process.Pid)
	d.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		d.waitErr = cmd.Wait()
		close(done)
	}(d.cmd, d.done)
	return nil
}

// WaitReady waits until the daemon answers with a 220 greeting, or fails if it exits first.
func (d *Daemon) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			return fmt.Errorf("appliance serve exited before listening: %v\n%s", d.waitErr, tail(d.Log(), 30))
		default:
		}
		if c, err := net.DialTimeout("tcp", d.Addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			n, _ := c.Read(buf)
			c.Close()
			if strings.HasPrefix(string(buf[:n]), "220") {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("appliance serve did not greet on %s within %v\n%s", d.Addr, timeout, tail(d.Log(), 30))
}

// Running reports whether the process is still alive.
func (d *Daemon) Running() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// ExitErr is how the process ended (nil while it runs or after a clean exit).
func (d *Daemon) ExitErr() error {
	if d.Running() {
		return nil
	}
	return d.waitErr
}

// Kill sends SIGKILL and waits: a crash, nothing flushed, nothing cleaned up.
func (d *Daemon) Kill() {
	if d.Running() {
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.done
	}
}

// Stop sends SIGTERM, waits up to ten seconds for a clean exit, then kills. It reports whether the
// daemon exited on SIGTERM by itself.
func (d *Daemon) Stop() bool {
	if d.cmd == nil || !d.Running() {
		return true
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
		return true
	case <-time.After(10 * time.Second):
		d.Kill()
		return false
	}
}

// Log is everything the daemon wrote to stdout and stderr so far.
func (d *Daemon) Log() string { return d.logs.String() }

// Run runs another appliance command (seal, inspect, check-config) with the daemon's environment
// and returns its stdout; the error includes stderr.
func Run(ctx context.Context, env *softhsmtest.Env, bin string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+env.Conf)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("failed to run appliance %s: %w: %s", args[0], err, tail(stderr.String(), 20))
		} else {
			err = fmt.Errorf("failed to run appliance %s: %w", args[0], err)
		}
	}
	return stdout.Bytes(), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... %d lines before", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
