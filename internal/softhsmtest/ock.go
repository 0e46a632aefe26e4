package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// The PKCS#11 implementations the tests can run against.
const (
	ImplEnv          = "APPLIANCE_TEST_TOKEN" // selects the implementation Setup gives
	ImplSoftHSM      = "softhsm2"
	ImplOpencryptoki = "opencryptoki"
)

// Impl is the implementation Setup gives this test binary: $APPLIANCE_TEST_TOKEN, SoftHSM2 when unset.
func Impl() string {
	if v := os.Getenv(ImplEnv); v != "" {
		return v
	}
	return ImplSoftHSM
}

// RequireSoftHSM skips a test that exercises SoftHSM2 itself (its softhsm2.conf, its token
// directory, softhsm2-util) when the binary runs against another implementation. The SoftHSM2 run
// of the same test binary covers it, so this is not a way to pass by testing nothing.
func (e *Env) RequireSoftHSM(tb testing.TB) {
	tb.Helper()
	if e.Impl != ImplSoftHSM {
		tb.Skipf("softhsmtest: the test drives SoftHSM2 itself; this run is against %s", e.Impl)
	}
}

var (
	ockOnce sync.Once
	ockEnv  *Env
	ockErr  error
	ockLock *os.File
	ockTmp  string
)

// Opencryptoki returns opencryptoki's software token, made afresh on first use in this test
// binary by softhsm-test/ocktoken.sh with the same label, PINs and keys (alice, list) as the
// SoftHSM2 token, and the same test PKI. opencryptoki keeps its token at fixed system paths behind
// one slot daemon, so this needs root, and one test binary at a time holds the token: the first
// use takes an exclusive lock (waiting for another binary to finish) and Cleanup releases it. Its
// Conf is empty: opencryptoki reads no per-process configuration. A missing opencryptoki skips the
// test, or fails it under CI.
func Opencryptoki(tb testing.TB) *Env {
	tb.Helper()
	if os.Geteuid() != 0 {
		missing(tb, "opencryptoki's token needs root (pkcsslotd, /var/lib/opencryptoki)")
	}
	for _, tool := range []string{"pkcsconf", "pkcsslotd", "pkcs11-tool", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, serr := os.Stat(filepath.Join("/usr/sbin", tool)); serr != nil {
				missing(tb, tool+" not found; install the opencryptoki and opensc packages")
			}
		}
	}
	ockOnce.Do(func() { ockEnv, ockErr = setupOCK() })
	if ockErr != nil {
		tb.Fatalf("softhsmtest: %v", ockErr)
	}
	return ockEnv
}

func setupOCK() (*Env, error) {
	root := RepoRoot()
	pki, err := cachedPKI(root)
	if err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "appliance-opencryptoki.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("lock the opencryptoki token: %w", err)
	}
	ockLock = lock
	ockTmp, err = os.MkdirTemp("", "appliance-ock-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("bash", filepath.Join(root, "softhsm-test", "ocktoken.sh"), pki)
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("failed to make the opencryptoki token: %v: %s%s", err, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	mod := lines[len(lines)-1]
	pin := filepath.Join(ockTmp, "pin")
	if err := os.WriteFile(pin, []byte(PIN), 0o600); err != nil {
		return nil, err
	}
	return &Env{Impl: ImplOpencryptoki, Module: mod, TokenDir: "/var/lib/opencryptoki/swtok", PINFile: pin, PKI: pki}, nil
}

func ockCleanup() {
	if ockTmp != "" {
		os.RemoveAll(ockTmp)
	}
	if ockLock != nil {
		ockLock.Close() // releases the flock
	}
}
