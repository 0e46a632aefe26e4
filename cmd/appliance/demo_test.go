package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestDemoScript runs scripts/demo.sh as a new user would, its output piped: no escape
// sequences, and at the end the commands to use its token and config again, which must work.
func TestDemoScript(t *testing.T) {
	if _, ok := softhsmtest.FindModule(); !ok {
		softhsmtest.Setup(t) // skips, or fails under CI=true
	}
	for _, tool := range []string{"swaks", "openssl", "softhsm2-util"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is missing", tool)
		}
	}
	root := softhsmtest.RepoRoot()
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "demo.sh"))
	cmd.Env = append(os.Environ(), "KEEP=1", "DEMO_SMTP_PORT="+freePort(t), "DEMO_SINK_PORT="+freePort(t), "NO_COLOR=")
	out, err := cmd.CombinedOutput()
	work := regexp.MustCompile(`(?m)^kept (\S+)$`).FindSubmatch(out)
	if work != nil {
		t.Cleanup(func() { os.RemoveAll(string(work[1])) })
	}
	if err != nil {
		t.Fatalf("demo.sh: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "\x1b") {
		t.Errorf("demo.sh wrote escape sequences to a pipe")
	}
	conf := regexp.MustCompile(`(?m)^  export SOFTHSM2_CONF=(\S+)$`).FindSubmatch(out)
	list := regexp.MustCompile(`(?m)^  (\S+/appliance) keys list -config (\S+)$`).FindSubmatch(out)
	if conf == nil || list == nil || work == nil {
		t.Fatalf("demo.sh does not say how to use its token and config again:\n%s", out)
	}
	reuse := exec.Command(string(list[1]), "keys", "list", "-config", string(list[2]))
	reuse.Env = append(os.Environ(), "SOFTHSM2_CONF="+string(conf[1]))
	got, err := reuse.CombinedOutput()
	if err != nil || !strings.Contains(string(got), "object=alice") {
		t.Fatalf("the demo's reuse command: %v\n%s", err, got)
	}
}

func TestDepsUsage(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("bash", filepath.Join(softhsmtest.RepoRoot(), "scripts", "deps.sh"), "everything").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage: deps.sh [--packages-only | demo]") {
		t.Fatalf("deps.sh everything: %v\n%s", err, out)
	}
}
