package queue

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The spool opens and renames with system calls of its own (openUnpolled, osFS.Rename), not
// os.OpenFile and os.Rename: what they give must be what those give where the spool looks.
func TestOSFSOpenAndRename(t *testing.T) {
	dir := t.TempDir()
	var fsys osFS
	name := filepath.Join(dir, "a")
	if err := os.WriteFile(name, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}

	f, err := fsys.OpenFile(name, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name() != name {
		t.Errorf("Name() = %q, want %q", f.Name(), name)
	}
	if _, err := f.WriteAt([]byte("ab"), 10); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 12)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "0123456789ab" {
		t.Errorf("ReadAt = %q, %v", buf, err)
	}
	if err := f.Datasync(); err != nil {
		t.Errorf("Datasync: %v", err)
	}
	if err := f.Truncate(4); err != nil {
		t.Fatal(err)
	}
	if n, err := f.Size(); err != nil || n != 4 {
		t.Errorf("Size() = %d, %v after Truncate(4)", n, err)
	}
	// Blocking, not in the poller: the descriptor has no O_NONBLOCK.
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.(osFile).Fd(), syscall.F_GETFL, 0)
	if errno != 0 {
		t.Fatal(errno)
	}
	fl := int(r)
	if fl&syscall.O_NONBLOCK != 0 || fl&syscall.O_ACCMODE != syscall.O_RDWR {
		t.Errorf("flags %#o: want O_RDWR and no O_NONBLOCK", fl)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// A read-only file refuses a write.
	ro, err := fsys.OpenFile(name, os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ro.WriteAt([]byte("x"), 0); err == nil {
		t.Error("a file opened O_RDONLY took a write")
	}
	ro.Close()

	missing := filepath.Join(dir, "missing")
	_, err = fsys.OpenFile(missing, os.O_RDONLY)
	var pe *os.PathError
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &pe) || pe.Path != missing || pe.Op != "open" {
		t.Errorf("opening a missing file: %v, want an *os.PathError (open %s) that is os.ErrNotExist", err, missing)
	}

	b := filepath.Join(dir, "b")
	if err := fsys.Rename(name, b); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(name); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old name is still there after Rename: %v", err)
	}
	if got, err := os.ReadFile(b); err != nil || string(got) != "0123" {
		t.Errorf("the new name holds %q, %v", got, err)
	}
	err = fsys.Rename(missing, filepath.Join(dir, "c"))
	var le *os.LinkError
	if !errors.Is(err, os.ErrNotExist) || !errors.As(err, &le) || le.Old != missing {
		t.Errorf("renaming a missing file: %v, want an *os.LinkError that is os.ErrNotExist", err)
	}
	// Onto a directory: refused, the file kept.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Rename(b, sub); err == nil {
		t.Error("a file renamed onto a directory")
	}
	if _, err := os.Stat(b); err != nil {
		t.Errorf("the file is gone after a refused rename: %v", err)
	}

	if err := fsys.SyncDir(dir); err != nil {
		t.Errorf("SyncDir: %v", err)
	}
	if err := fsys.SyncDir(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("SyncDir of a missing directory: %v, want os.ErrNotExist", err)
	}
	if err := fsys.SyncDir(b); err == nil {
		t.Error("SyncDir of a regular file succeeded")
	}
}
