package queue

import "container/heap"

// RetrySealing makes every message whose sealing was deferred due now and
// returns how many there are. The daemon calls it when the HSM is back:
// sealing was deferred for one cause, the cause is gone, and waiting out a
// backoff step of up to hours would only delay the mail. Messages a worker
// holds, and deferred deliveries, are left alone.
func (q *Queue) RetrySealing() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.opts.Now()
	n := 0
	for _, e := range q.entries {
		if e.idx < 0 || !e.sealDeferred || !e.due.After(now) {
			continue
		}
		e.due = now
		heap.Fix(&q.ready, e.idx)
		n++
	}
	if n > 0 {
		q.wakeLocked()
	}
	return n
}
