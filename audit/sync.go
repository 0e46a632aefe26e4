package audit

import (
	"os"
	"syscall"
)

// fdatasync makes the appended lines and the file's new size durable. It goes through the
// file's RawConn, which keeps the descriptor from being closed (and its number reused) during
// the call: a Close meanwhile makes it fail instead.
func fdatasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	return serr
}
