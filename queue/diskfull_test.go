package queue_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"appliance/internal/ci"
	"appliance/queue"
)

// smallFS mounts a tmpfs of size bytes for the test, or skips when this
// process may not mount (not root, or in a restricted container).
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		ci.Skipf(t, "needs root to mount a small tmpfs")
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		ci.Skipf(t, "cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// A full spool refuses new mail with ErrSpoolUnavailable, keeps what it
// acknowledged intact, and takes mail again once it has delivered.
func TestDiskFull(t *testing.T) {
	tests := []struct {
		name     string
		minFree  uint64
		wantNoSp bool // the refusal comes from the disk itself
	}{
		{name: "fail free space below threshold", minFree: 160 << 10},
		{name: "fail disk full", wantNoSp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := smallFS(t, "512k")
			sink := newSink(t)
			opts := baseOpts(filepath.Join(dir, "spool"))
			opts.MinFreeBytes = tt.minFree
			q, err := queue.Open(opts, &proc{}, newDeliverer(t, sink))
			if err != nil {
				t.Fatal(err)
			}
			body := bytes.Repeat([]byte("0123456789abcdef\r\n"), 20<<10/18)
			env := queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test"}}
			accepted := 0
			for ; accepted < 100; accepted++ {
				_, err = q.Accept(context.Background(), env, bytes.NewReader(body))
				if err != nil {
					break
				}
			}
			if !errors.Is(err, queue.ErrSpoolUnavailable) {
				t.Fatalf("after %d messages: %v, want ErrSpoolUnavailable", accepted, err)
			}
			if errors.Is(err, syscall.ENOSPC) != tt.wantNoSp {
				t.Errorf("ENOSPC in %v: want %v", err, tt.wantNoSp)
			}
			t.Logf("accepted %d messages before: %v", accepted, err)
			if accepted == 0 {
				t.Fatal("nothing accepted before the spool filled")
			}
			if tmp, _ := os.ReadDir(filepath.Join(opts.Dir, "tmp")); len(tmp) != 0 {
				t.Errorf("%d temp files left after refusing", len(tmp))
			}
			q.Close()

			// Every acknowledged message survives a restart intact. With no
			// headroom left sealing may have to wait for space, so the
			// sink's only check is that nothing acknowledged is lost.
			q2, err := queue.Open(opts, &proc{}, newDeliverer(t, sink))
			if err != nil {
				t.Fatalf("reopen full spool: %v", err)
			}
			if st := q2.Stats(); st.Messages != accepted {
				t.Fatalf("reopened with %d messages, want %d", st.Messages, accepted)
			}
			if tt.wantNoSp {
				q2.Close()
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { q2.Run(ctx); close(done) }()
			defer func() { cancel(); <-done; q2.Close() }()
			waitEmpty(t, q2, 20*time.Second)
			if got := len(sink.Messages()); got != accepted {
				t.Errorf("delivered %d, want %d", got, accepted)
			}
			if _, err := q2.Accept(context.Background(), env, bytes.NewReader(body)); err != nil {
				t.Errorf("Accept after draining: %v", err)
			}
		})
	}
}
