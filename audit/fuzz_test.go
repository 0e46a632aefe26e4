package audit_test

import (
	"os"
	"path/filepath"
	"testing"

	"appliance/audit"
)

// FuzzVerify: Verify and Show read files anyone may have edited; whatever two files hold, they
// return a report or an error, never panic.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir, MaxBytes: 4096})
	if err != nil {
		f.Fatal(err)
	}
	for range 20 {
		if err := l.Delivery(audit.Delivery{Message: "m", Recipient: "bob@example.org", Outcome: audit.Delivered}); err != nil {
			f.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		f.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(dir, audit.FileName(1)))
	b, _ := os.ReadFile(filepath.Join(dir, audit.FileName(2)))
	f.Add(a, b)
	f.Add([]byte("{}\n"), []byte(`{"seq":1,"type":"open","file":1}`+"\n"))
	f.Add([]byte(`{"seq":2,"type":"seal","file":1,"key":"AAAA","signature":"AAAA"}`), []byte{})
	d := f.TempDir()
	pa, pb := filepath.Join(d, audit.FileName(1)), filepath.Join(d, audit.FileName(2))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if err := os.WriteFile(pa, a, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pb, b, 0o600); err != nil {
			t.Fatal(err)
		}
		rep, err := audit.Verify([]string{pa, pb}, audit.VerifyOptions{})
		if err == nil && rep == nil {
			t.Fatal("no report and no error")
		}
		_ = audit.Show(discard{}, []string{pa, pb}, false)
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
