package queue

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// errPowerLoss is what every operation of a crashFS returns once its power
// is cut, until crash() brings it back.
var errPowerLoss = errors.New("simulated power loss")

// crashFS is an in-memory fileSystem that keeps, at a simulated power loss,
// only what was made durable: a file's bytes as of its last Sync or
// Datasync, and a directory's entries (files and subdirectories) as of its
// last SyncDir. Everything else, unsynced writes, creates, renames,
// removals and new directories, is forgotten. It is the pessimistic reading
// of POSIX a real file system may take after a power cut, unlike a killed
// process, whose writes the page cache keeps.
type crashFS struct {
	mu   sync.Mutex
	root string // exists and is durable from the start
	gen  int    // bumped by crash; open files of an older generation are dead

	files map[string]*inode // current view: path -> file
	dirs  map[string]bool   // current view: directories below root
	// durable entries per directory, as of its last SyncDir: name -> file,
	// or nil for a subdirectory.
	durable map[string]map[string]*inode

	// budget is the number of operations left before the power fails; -1
	// never. ops counts the operations done.
	budget, ops int
	down        bool
	seq         int // for CreateTemp names
}

type inode struct {
	data, synced []byte
}

func newCrashFS(root string) *crashFS {
	return &crashFS{root: root, files: map[string]*inode{}, dirs: map[string]bool{},
		durable: map[string]map[string]*inode{root: {}}, budget: -1}
}

// failAfter makes the power fail at operation n from now (0: the next one).
func (c *crashFS) failAfter(n int) {
	c.mu.Lock()
	c.budget = n
	c.mu.Unlock()
}

// crash loses everything that was not durable and brings the power back.
func (c *crashFS) crash() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.down, c.budget = false, -1
	c.files, c.dirs = map[string]*inode{}, map[string]bool{}
	var walk func(dir string)
	walk = func(dir string) {
		for name, ino := range c.durable[dir] {
			p := filepath.Join(dir, name)
			if ino == nil {
				c.dirs[p] = true
				walk(p)
				continue
			}
			ino.data = slices.Clone(ino.synced)
			c.files[p] = ino
		}
	}
	walk(c.root)
	// Directories that vanished lose their durable entries too.
	for d := range c.durable {
		if d != c.root && !c.dirs[d] {
			delete(c.durable, d)
		}
	}
}

// op accounts for one operation; it fails once the power is out.
func (c *crashFS) op() error {
	if c.down {
		return errPowerLoss
	}
	if c.budget == 0 {
		c.down = true
		return errPowerLoss
	}
	if c.budget > 0 {
		c.budget--
	}
	c.ops++
	return nil
}

func (c *crashFS) isDir(p string) bool { return p == c.root || c.dirs[p] }

func (c *crashFS) MkdirAll(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return err
	}
	if !strings.HasPrefix(dir, c.root+string(filepath.Separator)) {
		return &fs.PathError{Op: "mkdir", Path: dir, Err: fs.ErrPermission}
	}
	for d := dir; d != c.root; d = filepath.Dir(d) {
		c.dirs[d] = true
	}
	return nil
}

func (c *crashFS) CreateTemp(dir, pattern string) (spoolFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return nil, err
	}
	if !c.isDir(dir) {
		return nil, &fs.PathError{Op: "create", Path: dir, Err: fs.ErrNotExist}
	}
	c.seq++
	name := filepath.Join(dir, strings.Replace(pattern, "*", fmt.Sprint(c.seq), 1))
	ino := &inode{}
	c.files[name] = ino
	return &crashFile{c: c, ino: ino, name: name, gen: c.gen, write: true}, nil
}

func (c *crashFS) OpenFile(name string, flag int) (spoolFile, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errPowerLoss
	}
	ino := c.files[name]
	if ino == nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &crashFile{c: c, ino: ino, name: name, gen: c.gen, write: flag&(os.O_WRONLY|os.O_RDWR) != 0}, nil
}

func (c *crashFS) Rename(oldpath, newpath string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return err
	}
	ino := c.files[oldpath]
	if ino == nil || !c.isDir(filepath.Dir(newpath)) {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: fs.ErrNotExist}
	}
	delete(c.files, oldpath)
	c.files[newpath] = ino
	return nil
}

func (c *crashFS) Remove(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return err
	}
	if c.files[name] == nil {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	delete(c.files, name)
	return nil
}

func (c *crashFS) ReadDir(dir string) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, errPowerLoss
	}
	if !c.isDir(dir) {
		return nil, &fs.PathError{Op: "readdir", Path: dir, Err: fs.ErrNotExist}
	}
	var names []string
	for p := range c.files {
		if filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	for p := range c.dirs {
		if filepath.Dir(p) == dir {
			names = append(names, filepath.Base(p))
		}
	}
	slices.Sort(names)
	return names, nil
}

func (c *crashFS) SyncDir(dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.op(); err != nil {
		return err
	}
	if !c.isDir(dir) {
		return &fs.PathError{Op: "sync", Path: dir, Err: fs.ErrNotExist}
	}
	ents := map[string]*inode{}
	for p, ino := range c.files {
		if filepath.Dir(p) == dir {
			ents[filepath.Base(p)] = ino
		}
	}
	for p := range c.dirs {
		if filepath.Dir(p) == dir {
			ents[filepath.Base(p)] = nil
		}
	}
	c.durable[dir] = ents
	return nil
}

// crashFile is an open file; its offset is for Write.
type crashFile struct {
	c      *crashFS
	ino    *inode
	name   string
	gen    int
	write  bool
	off    int64
	closed bool
}

// check fails for a file closed, opened before the last crash, or used
// while the power is out; mutate also counts an operation.
func (f *crashFile) check(mutate bool) error {
	if f.closed {
		return fs.ErrClosed
	}
	if f.gen != f.c.gen {
		return errPowerLoss
	}
	if mutate {
		if !f.write {
			return &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
		}
		return f.c.op()
	}
	if f.c.down {
		return errPowerLoss
	}
	return nil
}

func (f *crashFile) Name() string { return f.name }

func (f *crashFile) Write(p []byte) (int, error) {
	n, err := f.WriteAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *crashFile) WriteAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check(true); err != nil {
		return 0, err
	}
	if end := off + int64(len(p)); end > int64(len(f.ino.data)) {
		f.ino.data = append(f.ino.data, make([]byte, end-int64(len(f.ino.data)))...)
	}
	copy(f.ino.data[off:], p)
	return len(p), nil
}

func (f *crashFile) ReadAt(p []byte, off int64) (int, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	if off >= int64(len(f.ino.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.ino.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *crashFile) Size() (int64, error) {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check(false); err != nil {
		return 0, err
	}
	return int64(len(f.ino.data)), nil
}

func (f *crashFile) Truncate(size int64) error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	if size <= int64(len(f.ino.data)) {
		f.ino.data = f.ino.data[:size]
	} else {
		f.ino.data = append(f.ino.data, make([]byte, size-int64(len(f.ino.data)))...)
	}
	return nil
}

func (f *crashFile) Sync() error { return f.Datasync() }

func (f *crashFile) Datasync() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if err := f.check(true); err != nil {
		return err
	}
	f.ino.synced = slices.Clone(f.ino.data)
	return nil
}

func (f *crashFile) Close() error {
	f.c.mu.Lock()
	defer f.c.mu.Unlock()
	if f.closed {
		return fs.ErrClosed
	}
	f.closed = true
	return nil
}
