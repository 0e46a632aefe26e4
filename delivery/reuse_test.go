package delivery_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/delivery"
	"appliance/internal/ci"
)

// A next hop that restarts drops every idle connection at once; the one retry of a delivery
// must then dial rather than take the next dead idle connection.
func TestDeliverAllIdleDropped(t *testing.T) {
	sink, c := sinkClient(t, false, delivery.Options{MaxIdle: 4, CommandTimeout: 5 * time.Second})
	// Concurrent deliveries leave several connections idle; on a busy machine a round may run
	// one after another, so try a few rounds.
	for round := 0; round < 20 && sink.Connections() < 2; round++ {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				if _, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, strings.NewReader(body)); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if sink.Connections() < 2 {
		ci.Skipf(t, "only %d connection(s) opened; nothing to test", sink.Connections())
	}
	sink.Down()
	if err := sink.Up(); err != nil {
		t.Fatal(err)
	}
	res, err := c.Deliver(context.Background(), "a@example.test", []string{"b@example.test"}, strings.NewReader(body))
	if err != nil || res[0].Err != nil {
		t.Fatalf("ok after the next hop restarted: %v %v", res, err)
	}
}
