package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"appliance/internal/softhsmtest"
)

// TestServeUnknownTokenLabel: a token label the module does not have stops `serve` at start with
// the label named (a mistyped label is found at once, not as mail that never leaves), unless
// hsm.wait_for_token says the token may come later; then the daemon starts and says the HSM is down.
func TestServeUnknownTokenLabel(t *testing.T) {
	env := softhsmtest.Setup(t)
	bin := Build(t)
	cfg := NewConfig(t, env, FreeAddr(t))
	cfg.HSM.Token = "no-such-token"
	cfg.Sender[0].Key = "pkcs11:token=no-such-token;object=alice"

	t.Run("fail stops at start", func(t *testing.T) {
		path, err := cfg.Write(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "serve", "-config", path)
		cmd.Env = append(cmd.Environ(), "SOFTHSM2_CONF="+env.Conf)
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("serve kept running with an unknown token label:\n%s", out)
		}
		t.Logf("serve said: %s", out)
		if err == nil || !strings.Contains(string(out), "no-such-token") || !strings.Contains(string(out), "token not found") {
			t.Fatalf("serve: %v, want an error naming the label:\n%s", err, out)
		}
	})
	t.Run("ok waits with wait_for_token", func(t *testing.T) {
		path, err := cfg.WriteWith(t.TempDir(), "wait_for_token = true")
		if err != nil {
			t.Fatal(err)
		}
		d := StartDaemonFile(t, env, path, cfg.SMTP.Listen)
		if err := d.WaitLog(`"msg":"hsm down"`, 1, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if !d.Running() {
			t.Fatalf("the daemon stopped: %v", d.ExitErr())
		}
	})
}
