package pipeline

import (
	"context"
	"runtime"
	"testing"
)

// waiting blocks until n acquirers wait on b.
func waiting(b *Budget, n int) {
	for {
		b.mu.Lock()
		w := len(b.waiters)
		b.mu.Unlock()
		if w == n {
			return
		}
		runtime.Gosched()
	}
}

func acquireAsync(b *Budget, ctx context.Context, n int64) <-chan func() {
	ch := make(chan func(), 1)
	go func() {
		r, err := b.Acquire(ctx, n)
		if err != nil {
			r = nil
		}
		ch <- r
	}()
	return ch
}

func granted(ch <-chan func()) bool {
	select {
	case r := <-ch:
		return r != nil
	default:
		return false
	}
}

// TestBudget: what fits is taken at once; what does not waits for releases, in order (a large
// message is not overtaken by small ones); one larger than the whole budget waits for all of it
// and runs alone; a waiter whose context ends leaves the line and lets the next one in.
func TestBudget(t *testing.T) {
	ctx := context.Background()
	b := NewBudget(100)
	r1, err := b.Acquire(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	big := acquireAsync(b, ctx, 50) // does not fit beside 60
	waiting(b, 1)
	small := acquireAsync(b, ctx, 10) // would fit, but comes after big
	waiting(b, 2)
	if granted(big) || granted(small) || b.InUse() != 60 {
		t.Fatalf("granted beyond the budget: in use %d", b.InUse())
	}
	r1()
	r1() // a second release gives nothing back
	rBig := <-big
	rSmall := <-small
	if rBig == nil || rSmall == nil || b.InUse() != 60 {
		t.Fatalf("after release: in use %d, want 60", b.InUse())
	}
	huge := acquireAsync(b, ctx, 1000) // more than the budget: all of it
	waiting(b, 1)
	rBig()
	if granted(huge) {
		t.Fatal("a message larger than the budget ran beside another")
	}
	rSmall()
	rHuge := <-huge
	if rHuge == nil || b.InUse() != 100 {
		t.Fatalf("huge: in use %d, want 100", b.InUse())
	}
	cctx, cancel := context.WithCancel(ctx)
	gone := acquireAsync(b, cctx, 10)
	waiting(b, 1)
	next := acquireAsync(b, ctx, 10)
	waiting(b, 2)
	cancel()
	if r := <-gone; r != nil {
		t.Fatal("a cancelled waiter was granted")
	}
	waiting(b, 1)
	rHuge()
	if r := <-next; r == nil || b.InUse() != 10 {
		t.Fatalf("after a waiter left: in use %d, want 10", b.InUse())
	}
	var none *Budget
	if r, err := none.Acquire(ctx, 1<<40); err != nil || r == nil {
		t.Fatal("a nil budget must not bound")
	}
}
