package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"appliance/internal/softhsmtest"
)

// The command line is tested through the real binary where what matters is what an operator
// sees: exit status, stdout and stderr apart, flags parsed by the program itself.

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

// applianceBin builds the appliance once per test binary (without -race: it is the program
// under test), with VCS stamping on so `version` has a revision to show. APPLIANCE_BIN names a
// binary built beforehand instead.
func applianceBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("APPLIANCE_BIN"); p != "" {
		return p
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "appliance-cli-bin-")
		if binErr != nil {
			return
		}
		binPath = binDir + "/appliance"
		cmd := exec.Command("go", "build", "-buildvcs=auto", "-o", binPath, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
	})
	if binErr != nil {
		t.Fatalf("go build: %v", binErr)
	}
	return binPath
}

// cleanupBin removes the binary applianceBin built; TestMain calls it.
func cleanupBin() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

type binResult struct {
	stdout, stderr string
	code           int
}

// runBin runs the appliance with args, stdin and extra environment (KEY=VALUE), with the test
// token's SOFTHSM2_CONF when env is not nil.
func runBin(t *testing.T, env *softhsmtest.Env, stdin string, extraEnv []string, args ...string) binResult {
	t.Helper()
	cmd := exec.Command(applianceBin(t), args...)
	cmd.Env = append(os.Environ(), extraEnv...)
	if env != nil {
		cmd.Env = append(cmd.Env, "SOFTHSM2_CONF="+env.Conf)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := binResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("appliance %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (r binResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}
