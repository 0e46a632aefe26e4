package softhsmtest

import (
	"appliance/internal/ci"
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ClientModulePaths are where Debian's p11-kit-modules installs p11-kit-client.so.
var ClientModulePaths = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
	"/usr/lib/pkcs11/p11-kit-client.so",
}

// Remote is a SoftHSM2 token served by `p11-kit server` in a process of its own, reached through
// p11-kit-client.so: the way a card with its own softhsm2.conf sits beside the test's token, and
// the way a network HSM is reached.
type Remote struct {
	Module  string // p11-kit-client.so
	Address string // P11_KIT_SERVER_ADDRESS for the client
	conf    string
	label   string
	socket  string

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Serve starts `p11-kit server` for the token labelled label of the SoftHSM2 configuration conf
// (from Card) and stops it when the test ends. It skips the test when p11-kit or its client module
// is missing, unless CI is set, where that is a failure. The client reads P11_KIT_SERVER_ADDRESS
// when the module is initialised: set it (t.Setenv) before opening the token.
func (e *Env) Serve(tb testing.TB, conf, label string) *Remote {
	tb.Helper()
	if _, err := exec.LookPath("p11-kit"); err != nil {
		missingCI(tb, "p11-kit not found; install the p11-kit package")
	}
	client := firstPresent(ClientModulePaths)
	if client == "" {
		missingCI(tb, "p11-kit-client.so not found; install the p11-kit-modules package")
	}
	dir, err := os.MkdirTemp("", "p11srv-") // short: a unix socket path is at most 107 bytes
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "sock")
	r := &Remote{Module: client, Address: "unix:path=" + socket, conf: conf, label: label, socket: socket}
	r.Start(tb)
	tb.Cleanup(r.Stop)
	return r
}

func missingCI(tb testing.TB, why string) {
	tb.Helper()
	if ci.On() {
		tb.Fatalf("softhsmtest: %s (CI is set: a missing tool is a failure, not a skip)", why)
	}
	tb.Skipf("softhsmtest: %s", why)
}

// Start runs the server (again, after Stop) and waits until its socket is there.
func (r *Remote) Start(tb testing.TB) {
	tb.Helper()
	mod, ok := FindModule()
	if !ok {
		missingCI(tb, "SoftHSM2 module not found")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	os.Remove(r.socket)
	cmd := exec.Command("p11-kit", "server", "-f", "-n", r.socket, "--provider", mod, "pkcs11:token="+r.label)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+r.conf)
	// The server forks a process per client connection; its own process group lets Stop end them
	// all, the way the token vanishes for every connection when a card is pulled.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatalf("softhsmtest: p11-kit server: %v", err)
	}
	// The server prints its address once the socket listens.
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		seen := false
		for sc.Scan() {
			if !seen && strings.HasPrefix(sc.Text(), "P11_KIT_SERVER_ADDRESS=") {
				seen = true
				ready <- true
			}
		}
		if !seen {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			cmd.Process.Kill()
			cmd.Wait()
			tb.Fatal("softhsmtest: p11-kit server exited before listening")
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		tb.Fatal("softhsmtest: p11-kit server did not listen within 30s")
	}
	r.cmd = cmd
}

// Stop kills the server, as pulling a card or losing the network does.
func (r *Remote) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	r.cmd.Wait()
	r.cmd = nil
}

// String names the server for test logs.
func (r *Remote) String() string {
	return fmt.Sprintf("p11-kit server for %q at %s", r.label, r.Address)
}

// Link is a proxy in front of a Remote's socket: what the client sends waits Delay per read
// (a network round trip), and waits while the link is held (a card busy with a slow signature).
type Link struct {
	Address string // P11_KIT_SERVER_ADDRESS for the client
	ln      net.Listener
	target  string

	mu    sync.Mutex
	delay time.Duration
	held  chan struct{} // closed while traffic flows; nil while not held
}

// Link starts a proxy to r, closed when the test ends.
func (r *Remote) Link(tb testing.TB) *Link {
	tb.Helper()
	dir, err := os.MkdirTemp("", "p11lnk-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	l := &Link{Address: "unix:path=" + sock, ln: ln, target: r.socket}
	tb.Cleanup(func() { ln.Close() })
	go l.serve()
	return l
}

// SetDelay makes every read from the client wait d before it is forwarded.
func (l *Link) SetDelay(d time.Duration) {
	l.mu.Lock()
	l.delay = d
	l.mu.Unlock()
}

// Hold stops forwarding what clients send until Release.
func (l *Link) Hold() {
	l.mu.Lock()
	if l.held == nil {
		l.held = make(chan struct{})
	}
	l.mu.Unlock()
}

// Release lets held traffic through.
func (l *Link) Release() {
	l.mu.Lock()
	if l.held != nil {
		close(l.held)
		l.held = nil
	}
	l.mu.Unlock()
}

func (l *Link) wait() {
	l.mu.Lock()
	d, held := l.delay, l.held
	l.mu.Unlock()
	if held != nil {
		<-held
	}
	if d > 0 {
		time.Sleep(d)
	}
}

func (l *Link) serve() {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			s, err := net.Dial("unix", l.target)
			if err != nil {
				return
			}
			defer s.Close()
			go func() {
				io.Copy(c, s)
				c.Close()
			}()
			buf := make([]byte, 64<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					l.wait()
					if _, werr := s.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}
