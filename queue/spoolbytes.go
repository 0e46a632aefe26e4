package queue

import (
	"io/fs"
	"path/filepath"
	"sync"
	"time"
)

// spoolBytesEvery is how often SpoolBytes walks the directory again.
const spoolBytesEvery = 10 * time.Second

// SpoolBytes returns a func that sums the sizes of the regular files under dir, walking it at
// most every 10 seconds (a load shedder asks once a second; a large spool costs a walk).
func SpoolBytes(dir string) func() int64 {
	var mu sync.Mutex
	var last time.Time
	var n int64
	return func() int64 {
		mu.Lock()
		defer mu.Unlock()
		if !last.IsZero() && time.Since(last) < spoolBytesEvery {
			return n
		}
		last = time.Now()
		var sum int64
		_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // a file renamed or removed meanwhile
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					sum += fi.Size()
				}
			}
			return nil
		})
		n = sum
		return n
	}
}
