package pipeline

import (
	"context"
	"math"
	"sync"
)

// Budget bounds the bytes of messages held whole in memory at once by the end-of-DATA check
// (CheckSpooled) and the queue's workers (Process): each takes a message's size times what its
// work holds of it before it reads the message, and gives it back when done. Waiters are served
// in order, so a large message is not starved by small ones; a message that needs more than the
// whole budget takes all of it and runs alone. The zero or nil Budget does not bound.
type Budget struct {
	mu      sync.Mutex
	max     int64
	used    int64
	waiters []*budgetWaiter
}

type budgetWaiter struct {
	n     int64
	ready chan struct{}
}

// NewBudget returns a budget of max bytes (0: no bound).
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Acquire waits until n bytes of the budget are free (the whole budget when n is more) and
// takes them; release gives them back. It fails only when ctx ends first.
func (b *Budget) Acquire(ctx context.Context, n int64) (release func(), err error) {
	if b == nil || b.max <= 0 {
		return func() {}, nil
	}
	n = max(min(n, b.max), 0)
	b.mu.Lock()
	if len(b.waiters) == 0 && b.used+n <= b.max {
		b.used += n
		b.mu.Unlock()
		return b.releaser(n), nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	b.waiters = append(b.waiters, w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return b.releaser(n), nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	select {
	case <-w.ready:
		// Granted as ctx ended: give it back.
		b.used -= n
	default:
		for i, o := range b.waiters {
			if o == w {
				b.waiters = append(b.waiters[:i], b.waiters[i+1:]...)
				break
			}
		}
	}
	b.grantLocked()
	b.mu.Unlock()
	return nil, ctx.Err()
}

func (b *Budget) releaser(n int64) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.used -= n
			b.grantLocked()
			b.mu.Unlock()
		})
	}
}

func (b *Budget) grantLocked() {
	for len(b.waiters) > 0 {
		w := b.waiters[0]
		if b.used+w.n > b.max {
			return
		}
		b.used += w.n
		close(w.ready)
		b.waiters = b.waiters[1:]
	}
}

// InUse is the bytes of the budget taken now.
func (b *Budget) InUse() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// cost is size times k, saturated; a negative size (not known) costs everything.
func cost(size, k int64) int64 {
	if size < 0 || size > math.MaxInt64/k {
		return math.MaxInt64
	}
	return size * k
}
