package tty

import (
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"

	"appliance/internal/ci"
)

// TestProgressDetectsTerminal opens a real pseudo-terminal: what a user's stderr is.
func TestProgressDetectsTerminal(t *testing.T) {
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		ci.Skipf(t, "no pseudo-terminals here: %v", err)
	}
	defer ptmx.Close()
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		ci.Skipf(t, "unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		ci.Skipf(t, "ptsname: %v", err)
	}
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ci.Skipf(t, "open pts: %v", err)
	}
	defer pts.Close()
	p := NewProgress(pts, "inspect", 10)
	if p.w == nil {
		t.Fatal("no progress on a terminal")
	}
	p.Step("a.eml")
	p.Done()
	buf := make([]byte, 256)
	k, err := ptmx.Read(buf)
	if err != nil || k == 0 {
		t.Fatalf("nothing drawn on the terminal: %v", err)
	}
}
