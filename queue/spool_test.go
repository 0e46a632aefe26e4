package queue

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Every caller of groupSync.sync gets a completed fsync that started after
// its call, also under contention; a removed directory reports its error.
func TestGroupSync(t *testing.T) {
	tests := []struct {
		name    string
		callers int
		remove  bool
	}{
		{name: "ok one caller", callers: 1},
		{name: "ok many callers", callers: 64},
		{name: "fail directory gone", callers: 8, remove: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tt.remove {
				os.Remove(dir)
			}
			g := newGroupSync(dir)
			var wg sync.WaitGroup
			errs := make([]error, tt.callers)
			for i := range tt.callers {
				wg.Go(func() { errs[i] = g.sync() })
			}
			wg.Wait()
			for i, err := range errs {
				if (err != nil) != tt.remove {
					t.Errorf("caller %d: %v", i, err)
				}
			}
			if g.leading || g.next != nil {
				t.Errorf("left leading=%v next=%v", g.leading, g.next)
			}
		})
	}
}
