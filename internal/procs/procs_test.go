package procs

import (
	"runtime"
	"sync"
	"testing"
)

// TestWiden: the Ps double while anyone holds a widening, however many do at once, and go back
// to the runtime's own number when the last lets go; a release called twice counts once.
func TestWiden(t *testing.T) {
	t.Setenv("GOMAXPROCS", "")
	runtime.SetDefaultGOMAXPROCS()
	base := runtime.GOMAXPROCS(0)

	r1 := Widen()
	if got := runtime.GOMAXPROCS(0); got != factor*base {
		t.Fatalf("widened: %d Ps, want %d", got, factor*base)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			r := Widen()
			defer r()
			if got := runtime.GOMAXPROCS(0); got != factor*base {
				t.Errorf("widened again: %d Ps, want %d", got, factor*base)
			}
		})
	}
	wg.Wait()
	if got := runtime.GOMAXPROCS(0); got != factor*base {
		t.Fatalf("after the others let go: %d Ps, want %d (r1 still holds)", got, factor*base)
	}
	r1()
	r1()
	if got := runtime.GOMAXPROCS(0); got != base {
		t.Fatalf("released: %d Ps, want %d", got, base)
	}
	r2 := Widen()
	defer r2()
	if got := runtime.GOMAXPROCS(0); got != factor*base {
		t.Fatalf("widened after a double release: %d Ps, want %d", got, factor*base)
	}
}

// TestWidenFixed: a GOMAXPROCS the operator set is left alone.
func TestWidenFixed(t *testing.T) {
	t.Setenv("GOMAXPROCS", "3")
	before := runtime.GOMAXPROCS(0)
	r := Widen()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS set: %d Ps, want %d", got, before)
	}
	r()
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS set, released: %d Ps, want %d", got, before)
	}
}
