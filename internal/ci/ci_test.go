package ci

import "testing"

func TestOn(t *testing.T) {
	for _, tt := range []struct {
		val  string
		want bool
	}{{"", false}, {"true", true}, {"1", true}, {"True", true}, {"yes", true}} {
		t.Setenv("CI", tt.val)
		if got := On(); got != tt.want {
			t.Errorf("CI=%q: On() = %v, want %v", tt.val, got, tt.want)
		}
	}
}

// fakeTB records how Skipf ended the test.
type fakeTB struct {
	testing.TB
	failed, skipped bool
}

func (f *fakeTB) Helper()               {}
func (f *fakeTB) Fatalf(string, ...any) { f.failed = true }
func (f *fakeTB) Skipf(string, ...any)  { f.skipped = true }

func TestSkipf(t *testing.T) {
	for _, tt := range []struct {
		val        string
		fail, skip bool
	}{{"", false, true}, {"true", true, false}, {"1", true, false}, {"True", true, false}} {
		t.Setenv("CI", tt.val)
		f := &fakeTB{}
		Skipf(f, "tool missing")
		if f.failed != tt.fail || f.skipped != tt.skip {
			t.Errorf("CI=%q: failed %v skipped %v, want %v %v", tt.val, f.failed, f.skipped, tt.fail, tt.skip)
		}
	}
}
