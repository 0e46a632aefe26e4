package audit

import (
	"os"
	"syscall"
)

// fdatasync makes an appended line and the file's new size durable.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
