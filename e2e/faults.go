package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/internal/softhsmtest"
)

// Helpers for the fault-injection tests (crash, HSM outage, next hop, disk, signals).

// Signal sends sig to the running daemon.
func (d *Daemon) Signal(sig os.Signal) error {
	if d.cmd == nil || !d.Running() {
		return fmt.Errorf("failed to signal appliance serve: not running")
	}
	return d.cmd.Process.Signal(sig)
}

// WaitExit waits up to timeout for the process to end by itself.
func (d *Daemon) WaitExit(timeout time.Duration) error {
	select {
	case <-d.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("appliance serve still running after %v", timeout)
	}
}

// WaitLog waits up to timeout until the daemon's log holds n occurrences of substr.
func (d *Daemon) WaitLog(substr string, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if got := strings.Count(d.Log(), substr); got >= n {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d log lines with %q after %v\n%s", got, n, substr, timeout, tail(d.Log(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WriteWith writes the configuration like Write, with extra lines added to its [hsm] table (keys
// the Config struct does not model, such as require_up).
func (c Config) WriteWith(dir, hsmExtra string) (string, error) {
	path, err := c.Write(dir)
	if err != nil || hsmExtra == "" {
		return path, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("failed to read config: %w", err)
	}
	s := string(b)
	if !strings.Contains(s, "[hsm]\n") {
		return "", fmt.Errorf("failed to add to [hsm]: no [hsm] table in %q", path)
	}
	s = strings.Replace(s, "[hsm]\n", "[hsm]\n"+hsmExtra+"\n", 1)
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		return "", fmt.Errorf("failed to write config: %w", err)
	}
	return path, nil
}

// StartDaemonFile is StartDaemon for a configuration file already written, listening on addr.
func StartDaemonFile(tb testing.TB, env *softhsmtest.Env, path, addr string) *Daemon {
	tb.Helper()
	d := &Daemon{Bin: Build(tb), ConfigPath: path, Addr: addr, Env: []string{"SOFTHSM2_CONF=" + env.Conf}}
	if err := d.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Stop()
		if tb.Failed() {
			tb.Logf("appliance serve log (%s):\n%s", d.ConfigPath, tail(d.Log(), 80))
		}
	})
	if err := d.WaitReady(30 * time.Second); err != nil {
		tb.Fatal(err)
	}
	return d
}

// OwnToken makes a SoftHSM2 token for one test only (same PKI, same keys, label and PIN as env's),
// so the test can take it away without disturbing the other tests of the binary. The returned
// Env's Conf must be passed to the daemon; this process keeps env's SOFTHSM2_CONF.
func OwnToken(tb testing.TB, env *softhsmtest.Env) *softhsmtest.Env {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "token")
	cmd := exec.Command("bash", filepath.Join(softhsmtest.RepoRoot(), "softhsm-test", "mktoken.sh"), dir, env.PKI)
	cmd.Env = os.Environ() // mktoken.sh sets SOFTHSM2_CONF for itself
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("failed to make token: %v: %s", err, out)
	}
	own := *env
	own.Conf = filepath.Join(dir, "softhsm2.conf")
	own.TokenDir = filepath.Join(dir, "tokens")
	own.PINFile = filepath.Join(dir, "pin")
	return &own
}
