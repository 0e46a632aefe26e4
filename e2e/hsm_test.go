package e2e

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// hsmRig is a daemon on a token of its own, which the test may take away.
type hsmRig struct {
	own  *softhsmtest.Env
	pki  *PKI
	sink *sink.Sink
	d    *Daemon
}

// takeToken moves the token's directory away (SoftHSM2 then fails every operation on it) and
// returns the function that puts it back.
func takeToken(t *testing.T, own *softhsmtest.Env) (restore func()) {
	t.Helper()
	away := own.TokenDir + ".away"
	if err := os.Rename(own.TokenDir, away); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore = func() {
		once.Do(func() {
			if err := os.Rename(away, own.TokenDir); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func newHSMRig(t *testing.T, hsmExtra string, before func(own *softhsmtest.Env)) *hsmRig {
	t.Helper()
	env := softhsmtest.Setup(t)
	Build(t)
	own := OwnToken(t, env)
	pki, err := LoadPKI(own.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, own, s.Addr())
	path, err := cfg.WriteWith(t.TempDir(), `reconnect_max = "500ms"`+"\n"+hsmExtra)
	if err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(own)
	}
	return &hsmRig{own: own, pki: pki, sink: s, d: StartDaemonFile(t, own, path, cfg.SMTP.Listen)}
}

// waitDelivered waits until every Message-ID in ids has reached each of its recipients, then fails
// the test if any of them arrived more than once: without a crash nothing is sent twice.
func waitDelivered(t *testing.T, s *sink.Sink, ids map[string][]string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tl := newTally(s)
	for {
		tl.update()
		var missing []string
		for id, rcpts := range ids {
			for _, r := range rcpts {
				if tl.count[[2]string{id, r}] == 0 {
					missing = append(missing, id+" -> "+r)
				}
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged deliveries missing after %v, e.g. %q", len(missing), timeout, missing[:min(5, len(missing))])
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // a duplicate right behind the first copy
	tl.update()
	for id, rcpts := range ids {
		for _, r := range rcpts {
			if n := tl.count[[2]string{id, r}]; n != 1 {
				t.Errorf("%s reached %s %d times, want once", id, r, n)
			}
		}
	}
}

// TestHSMOutage takes the token away under load and brings it back: the front end keeps
// accepting, sealing waits, the log says "hsm down" and "hsm up", and every acknowledged message
// is delivered after the recovery, as private as without the outage (every third message has dave
// as a hidden recipient, and the privacy checker judges every transaction).
func TestHSMOutage(t *testing.T) {
	r := newHSMRig(t, "", nil)
	var (
		mu       sync.Mutex
		acked    = map[string][]string{}
		led      = newLedgerOf()
		outage   atomic.Bool // set while the token is away and the daemon knows it
		inOutage atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for ci := range 2 {
		wg.Go(func() {
			cl := &client{addr: r.d.Addr}
			defer cl.close()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				m := Message{From: Sender, To: []string{bob}, Subject: fmt.Sprintf("outage %d/%d", ci, n), Text: "x\n"}
				raw := m.Bytes()
				rcpt := []string{bob}
				if n%3 == 0 {
					rcpt = append(rcpt, dave) // hidden: a package of its own
				}
				led.add(raw, m.To, nil)
				if err := cl.send(Sender, rcpt, raw); err != nil {
					t.Errorf("submission refused while the spool has room: %v", err)
					return
				}
				if outage.Load() {
					inOutage.Add(1)
				}
				mu.Lock()
				acked[messageID(raw)] = rcpt
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	restore := takeToken(t, r.own)
	if err := r.d.WaitLog(`"msg":"hsm down"`, 1, 15*time.Second); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	outage.Store(true)
	time.Sleep(1500 * time.Millisecond)
	outage.Store(false)
	before := len(r.sink.Transactions())
	restore()
	if err := r.d.WaitLog(`"msg":"hsm up"`, 1, 15*time.Second); err != nil {
		close(stop)
		wg.Wait()
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if inOutage.Load() == 0 {
		t.Fatal("no message was accepted while the token was away")
	}
	mu.Lock()
	defer mu.Unlock()
	waitDelivered(t, r.sink, acked, 20*time.Second)
	txs := r.sink.Transactions()
	if n := checkDelivered(t, r.pki, led, txs, nil); n < len(acked) {
		t.Errorf("privacy checker judged %d transactions for %d messages", n, len(acked))
	}
	// One line per change of state: a loss seen by several operations at once, or a stale
	// failure of a key from before the reconnect, must not make the state flap.
	if down, up := strings.Count(r.d.Log(), `"msg":"hsm down"`), strings.Count(r.d.Log(), `"msg":"hsm up"`); down != 1 || up != 1 {
		t.Errorf("%d \"hsm down\" and %d \"hsm up\" log lines, want 1 each", down, up)
	}
	t.Logf("%d messages acknowledged, %d of them while the token was away; %d transactions before the token came back, %d after",
		len(acked), inOutage.Load(), before, len(r.sink.Transactions())-before)
}

// TestHSMMissingAtStart starts the daemon without its token: it starts anyway, and accepts and
// seals once the token appears, or under hsm.require_up answers 451 4.3.0 until then.
func TestHSMMissingAtStart(t *testing.T) {
	tests := []struct {
		name      string
		requireUp bool
	}{
		{name: "ok accepts and seals when the token appears"},
		{name: "ok require_up refuses with 451 until the token appears", requireUp: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			extra := "wait_for_token = true"
			if tt.requireUp {
				extra += "\nrequire_up = true"
			}
			var restore func()
			r := newHSMRig(t, extra, func(own *softhsmtest.Env) { restore = takeToken(t, own) })
			if err := r.d.WaitLog(`"msg":"hsm down"`, 1, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			ids := map[string][]string{}
			led := newLedgerOf()
			m := Message{From: Sender, To: []string{bob}, Subject: "before the token", Text: "x\n"}
			raw := m.Bytes()
			led.add(raw, m.To, nil)
			res, err := SubmitGo(r.d.Addr, Sender, []string{bob, dave}, raw)
			if err != nil {
				t.Fatal(err)
			}
			if tt.requireUp {
				var se *smtp.SMTPError
				if !errors.As(res.Mail, &se) || se.Code != 451 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 0}) {
					t.Fatalf("MAIL with the token missing under require_up: %v, want 451 4.3.0", res.Mail)
				}
			} else {
				if res.Mail != nil || res.Data != nil {
					t.Fatalf("submission with the token missing: MAIL %v, DATA %v; want 250", res.Mail, res.Data)
				}
				ids[messageID(raw)] = []string{bob, dave}
				time.Sleep(time.Second)
				if n := len(r.sink.Transactions()); n != 0 {
					t.Fatalf("%d transactions sealed without a token", n)
				}
			}
			restore()
			if err := r.d.WaitLog(`"msg":"hsm up"`, 1, 10*time.Second); err != nil {
				t.Fatal(err)
			}
			m = Message{From: Sender, To: []string{bob}, Subject: "after the token", Text: "y\n"}
			raw = m.Bytes()
			led.add(raw, m.To, nil)
			if res, err := SubmitGo(r.d.Addr, Sender, []string{bob, dave}, raw); err != nil || res.Mail != nil || res.Data != nil {
				t.Fatalf("submission after the token came back: %v, %+v", err, res)
			}
			ids[messageID(raw)] = []string{bob, dave}
			waitDelivered(t, r.sink, ids, 10*time.Second)
			if n, want := checkDelivered(t, r.pki, led, r.sink.Transactions(), nil), 2*len(ids); n != want {
				t.Errorf("privacy checker judged %d transactions, want %d", n, want)
			}
		})
	}
}
