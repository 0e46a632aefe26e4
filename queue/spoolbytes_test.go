package queue

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSpoolBytes(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, size := range map[string]int{"a": 100, "sub/b": 23} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := SpoolBytes(dir)
	if got := f(); got != 123 {
		t.Fatalf("SpoolBytes = %d, want 123", got)
	}
	// Within the walk interval the sum is the one already taken.
	if err := os.WriteFile(filepath.Join(dir, "c"), make([]byte, 7), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := f(); got != 123 {
		t.Errorf("SpoolBytes again at once = %d, want the cached 123", got)
	}
	if got := SpoolBytes(dir)(); got != 130 {
		t.Errorf("a new SpoolBytes = %d, want 130", got)
	}
}
