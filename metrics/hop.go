package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// hopReachableFor is how long a completed transaction vouches for the next hop.
const hopReachableFor = 2 * time.Minute

// NextHop remembers when the next hop last answered (any SMTP reply counts: a 5xx is still an
// answer) and when a transaction last failed without one.
type NextHop struct {
	Addr           string // host:port dialled by Probe
	mu             sync.Mutex
	lastOK, lastKO time.Time
	lastErr        error
}

// Record notes one transaction's outcome.
func (h *NextHop) Record(err error) {
	var se *smtp.SMTPError
	reached := err == nil || errors.As(err, &se)
	h.mu.Lock()
	defer h.mu.Unlock()
	if reached {
		h.lastOK = time.Now()
	} else {
		h.lastKO, h.lastErr = time.Now(), err
	}
}

// Probe passes while the last transaction reached the next hop within hopReachableFor; without
// such a recent one (idle relay, or the last attempt failed) it dials the next hop.
func (h *NextHop) Probe(ctx context.Context) error {
	h.mu.Lock()
	ok := !h.lastOK.IsZero() && time.Since(h.lastOK) < hopReachableFor && !h.lastKO.After(h.lastOK)
	h.mu.Unlock()
	if ok {
		return nil
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", h.Addr)
	if err != nil {
		return fmt.Errorf("failed to reach next hop %q: %w", h.Addr, err)
	}
	c.Close()
	h.mu.Lock()
	h.lastOK = time.Now()
	h.mu.Unlock()
	return nil
}
