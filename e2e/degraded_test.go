package e2e

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"appliance/internal/sink"
)

// ledgerOf records what was submitted, by Message-ID, so that what arrives on a degraded path (a
// token outage, a crash and restart, a retry) can be judged by the privacy checker, not only
// counted.
type ledgerOf struct {
	mu   sync.Mutex
	sent map[string]Expect
}

func newLedgerOf() *ledgerOf { return &ledgerOf{sent: map[string]Expect{}} }

// add records a submission of raw from Sender to rcpt with header recipients to and cc.
func (l *ledgerOf) add(raw []byte, to, cc []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[messageID(raw)] = Expect{From: Sender, To: to, Cc: cc, Message: raw}
}

// checkDelivered runs the privacy checker on every transaction in txs (DSNs aside: they go to the
// sender alone, who knows every recipient), each against the message it carries and with its own
// envelope recipients: copies sent twice after a crash are each judged, and every one must reveal
// nothing its recipients may not see, decrypt for each of them, and verify to what was submitted.
// when, if not nil, picks the transactions to judge. It returns the number judged.
func checkDelivered(t *testing.T, pki *PKI, l *ledgerOf, txs []sink.Transaction, when func(sink.Transaction) bool) int {
	t.Helper()
	c := &Checker{PKI: pki, Tmp: t.TempDir()}
	l.mu.Lock()
	sent := l.sent
	l.mu.Unlock()
	var (
		mu     sync.Mutex
		errs   []string
		judged int
		wg     sync.WaitGroup
		work   = make(chan sink.Transaction)
	)
	for range max(2, runtime.NumCPU()) {
		wg.Go(func() {
			for tx := range work {
				id := messageID(tx.Data)
				exp, ok := sent[id]
				var err error
				if !ok {
					err = fmt.Errorf("transaction to %v carries %q, which nobody sent", tx.RcptTo, id)
				} else {
					exp.Rcpt = tx.RcptTo
					_, err = c.Check(context.Background(), exp, []sink.Transaction{tx})
				}
				mu.Lock()
				judged++
				if err != nil {
					errs = append(errs, fmt.Sprintf("%s to %v: %v", id, tx.RcptTo, err))
				}
				mu.Unlock()
			}
		})
	}
	for _, tx := range txs {
		if tx.MailFrom == "" || when != nil && !when(tx) {
			continue
		}
		work <- tx
	}
	close(work)
	wg.Wait()
	for _, e := range errs[:min(len(errs), 5)] {
		t.Errorf("privacy check: %s", e)
	}
	if len(errs) > 5 {
		t.Errorf("... and %d more privacy check failures", len(errs)-5)
	}
	return judged
}
