package queue

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// fileSystem is everything the spool does to its files and directories, so
// that tests can put a file system under it that loses, at a simulated power
// loss, whatever was not synced.
type fileSystem interface {
	MkdirAll(dir string) error
	// CreateTemp creates a new file in dir, for writing.
	CreateTemp(dir, pattern string) (spoolFile, error)
	// OpenFile opens an existing file with os.O_RDONLY, os.O_WRONLY or
	// os.O_RDWR.
	OpenFile(name string, flag int) (spoolFile, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	// ReadDir returns the names in dir, sorted.
	ReadDir(dir string) ([]string, error)
	// SyncDir makes the entries of dir durable: created, renamed and
	// removed names.
	SyncDir(dir string) error
}

// spoolFile is an open file of a fileSystem.
type spoolFile interface {
	io.Writer
	io.ReaderAt
	io.WriterAt
	Name() string
	Size() (int64, error)
	Truncate(size int64) error
	// Sync is fsync: data and metadata durable.
	Sync() error
	// Datasync is fdatasync: data and size durable.
	Datasync() error
	Close() error
}

// osFS is the real file system.
type osFS struct{}

func (osFS) MkdirAll(dir string) error { return os.MkdirAll(dir, 0o700) }

func (osFS) CreateTemp(dir, pattern string) (spoolFile, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) OpenFile(name string, flag int) (spoolFile, error) {
	f, err := openUnpolled(name, flag)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// openUnpolled opens name as os.OpenFile does, less what os.OpenFile does for a descriptor the
// runtime's poller might wait on: for a regular file or a directory it sets O_NONBLOCK, fails to
// add it to epoll, and clears O_NONBLOCK again, three system calls for nothing on each of the
// several opens a spooled message gets on its way (os.NewFile asks for the flags, one call).
func openUnpolled(name string, flag int) (*os.File, error) {
	var fd int
	if err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(name, flag|syscall.O_CLOEXEC, 0)
		return err
	}); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}

// Rename is rename(2). os.Rename first looks whether newpath is a directory, to refuse with an
// error of its own what rename(2) refuses anyway (EISDIR): a system call for nothing on every
// accept and every removal of the spool, whose new paths are never directories.
func (osFS) Rename(oldpath, newpath string) error {
	if err := ignoringEINTR(func() error { return syscall.Rename(oldpath, newpath) }); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// ignoringEINTR calls f again for as long as a signal interrupts it.
func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

func (osFS) Remove(name string) error { return os.Remove(name) }

func (osFS) ReadDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, err
}

func (osFS) SyncDir(dir string) error { return syncDir(dir) }

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// Datasync is fdatasync: appends need the data and the new size durable,
// not the modification time.
func (f osFile) Datasync() error {
	return ignoringEINTR(func() error { return syscall.Fdatasync(int(f.Fd())) })
}

func syncDir(dir string) error {
	d, err := openUnpolled(dir, os.O_RDONLY|syscall.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("failed to open directory %q: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("failed to sync directory %q: %w", dir, err)
	}
	return nil
}

// syncPoint names a sync the spool's durability rests on; tests skip one at
// a time to show that the crash tests notice.
type syncPoint int

const (
	syncNone         syncPoint = iota
	syncOpenDir                // openSpool: tmp/ and msg/ in the spool directory
	syncAcceptFile             // writeMessage: the new file's bytes, before its rename
	syncAcceptDir              // writeMessage: the rename into msg/
	syncCommit                 // commit: packages and state
	syncRemoveDir              // remove: the file gone from msg/
	syncRecoverTrunc           // load: the cut-off tail of a torn commit
)

var syncPointNames = map[syncPoint]string{
	syncOpenDir: "open: spool directory", syncAcceptFile: "accept: file", syncAcceptDir: "accept: msg directory",
	syncCommit: "commit: file", syncRemoveDir: "remove: msg directory", syncRecoverTrunc: "recover: truncated file",
}

func (p syncPoint) String() string { return syncPointNames[p] }
