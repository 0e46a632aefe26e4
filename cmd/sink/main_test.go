package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSinkBinary runs the command as the demo does: it must store what it receives as NNN.eml and
// NNN.json and exit cleanly on SIGTERM.
func TestSinkBinary(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "sink")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	out := filepath.Join(dir, "out")
	cmd := exec.Command(bin, "-listen", addr, "-dir", out)
	var logs strings.Builder
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var c *smtp.Client
	for i := 0; i < 100; i++ {
		if c, err = smtp.Dial(addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("sink does not listen: %v\n%s", err, logs.String())
	}
	msg := "Subject: demo\r\n\r\nhello\r\n"
	if err := c.SendMail("a@example.test", []string{"b@example.test"}, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit on SIGTERM: %v\n%s", err, logs.String())
	}
	eml, err := os.ReadFile(filepath.Join(out, "001.eml"))
	if err != nil || string(eml) != msg {
		t.Fatalf("001.eml: %q %v", eml, err)
	}
	meta, err := os.ReadFile(filepath.Join(out, "001.json"))
	if err != nil || !strings.Contains(string(meta), `"b@example.test"`) {
		t.Fatalf("001.json: %s %v", meta, err)
	}
	if !strings.Contains(logs.String(), "received") {
		t.Errorf("no log line for the transaction:\n%s", logs.String())
	}
}

func TestSinkBinaryUsage(t *testing.T) {
	if os.Getenv("SINK_USAGE_CHILD") == "1" {
		os.Args = []string{"sink"}
		main()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSinkBinaryUsage$")
	cmd.Env = append(os.Environ(), "SINK_USAGE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage: sink") {
		t.Fatalf("without -dir: %v, want exit 2 and usage:\n%s", err, out)
	}
}
