package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// messageID is the Message-ID of a rendered test message, angle brackets included.
func messageID(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(m.Header.Get("Message-ID"))
}

// client is one submitting connection that is re-dialled after any failure, as an MTA would.
type client struct {
	addr string
	c    *smtp.Client
	conn net.Conn
}

func (cl *client) close() {
	if cl.c != nil {
		cl.c.Close()
	}
	cl.c, cl.conn = nil, nil
}

// send runs one transaction; nil means every recipient and the data got 250.
func (cl *client) send(from string, rcpt []string, msg []byte) error {
	if cl.c == nil {
		conn, err := net.DialTimeout("tcp", cl.addr, 2*time.Second)
		if err != nil {
			return err
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		c := smtp.NewClient(conn)
		if err := c.Hello("client.example.test"); err != nil {
			c.Close()
			return err
		}
		cl.c, cl.conn = c, conn
	}
	cl.conn.SetDeadline(time.Now().Add(10 * time.Second))
	err := func() error {
		if err := cl.c.Mail(from, nil); err != nil {
			return err
		}
		for _, r := range rcpt {
			if err := cl.c.Rcpt(r, nil); err != nil {
				return err
			}
		}
		w, err := cl.c.Data()
		if err != nil {
			return err
		}
		if _, err := w.Write(msg); err != nil {
			return err
		}
		return w.Close()
	}()
	if err != nil {
		cl.close()
	}
	return err
}

// ledger is what the clients sent and what came back.
type ledger struct {
	mu      sync.Mutex
	acked   map[string][]string // Message-ID -> recipients, for messages that got 250
	unacked map[string][]string // submitted without a 250: may or may not arrive, never twice
}

// tally counts, per Message-ID and recipient, the transactions at a sink. It parses each
// transaction once: polling thousands of them in a loop would take the CPU the daemon needs.
type tally struct {
	s     *sink.Sink
	seen  int
	count map[[2]string]int
	dsns  int
}

func newTally(s *sink.Sink) *tally { return &tally{s: s, count: map[[2]string]int{}} }

// update takes in the transactions that arrived since the last call.
func (t *tally) update() {
	txs := t.s.Transactions()
	for _, tx := range txs[t.seen:] {
		if tx.MailFrom == "" {
			t.dsns++
			continue
		}
		id := messageID(tx.Data)
		for _, r := range tx.RcptTo {
			t.count[[2]string{id, r}]++
		}
	}
	t.seen = len(txs)
}

// TestCrashKill is the crash acceptance test of issue 7: several clients submit small messages
// while the daemon is killed with SIGKILL at random moments and restarted; every message that got
// a 250 must reach each of its recipients, and a recipient may get a message twice only when the
// kill fell between the next hop's 250 and the spool's record of it (bounded by the transactions
// that can be in flight at once). Every transaction of a message that was spooled or in flight at
// a kill (so went through recovery), and of every message delivered twice, is judged by the
// privacy checker.
func TestCrashKill(t *testing.T) {
	const (
		total   = 2000 // acknowledged messages at least
		kills   = 10   // SIGKILLs at least
		clients = 4
		workers = 4
		// A message has at most 2 packages (To/Cc, and one Bcc), so at most workers x 2
		// transactions are in flight at a kill.
		inFlightPerKill = workers * 2
	)
	env := softhsmtest.Setup(t)
	Build(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	cfg.Queue.Workers = workers
	d := StartDaemon(t, env, cfg)

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	led := &ledger{acked: map[string][]string{}, unacked: map[string][]string{}}
	sent := newLedgerOf()
	var nAcked, nFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ci := range clients {
		wg.Go(func() {
			cl := &client{addr: d.Addr}
			defer cl.close()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				m := Message{From: Sender, To: []string{bob}, Cc: []string{erin},
					Subject: fmt.Sprintf("crash %d/%d", ci, n), Text: fmt.Sprintf("client %d message %d\n", ci, n)}
				rcpt := []string{bob, erin}
				if n%5 == 0 {
					rcpt = append(rcpt, dave) // a Bcc: its own package
				}
				raw := m.Bytes()
				id := messageID(raw)
				sent.add(raw, m.To, m.Cc)
				led.mu.Lock()
				led.unacked[id] = rcpt
				led.mu.Unlock()
				if err := cl.send(Sender, rcpt, raw); err != nil {
					nFailed.Add(1)
					time.Sleep(10 * time.Millisecond) // the daemon is restarting
					continue
				}
				led.mu.Lock()
				delete(led.unacked, id)
				led.acked[id] = rcpt
				led.mu.Unlock()
				nAcked.Add(1)
			}
		})
	}

	// crossed are the messages spooled or in flight at a kill: recovery delivers them.
	crossed := map[string]bool{}
	tk := newTally(s)
	start := time.Now()
	done := 0
	for done < kills || nAcked.Load() < total {
		if time.Since(start) > 150*time.Second {
			close(stop)
			wg.Wait()
			t.Fatalf("only %d kills and %d acknowledged messages after %v", done, nAcked.Load(), time.Since(start))
		}
		time.Sleep(time.Duration(100+rng.IntN(600)) * time.Millisecond)
		if done >= kills {
			continue
		}
		tk.update()
		led.mu.Lock()
		for id, rcpts := range led.acked {
			for _, r := range rcpts {
				if tk.count[[2]string{id, r}] == 0 {
					crossed[id] = true
				}
			}
		}
		for id := range led.unacked {
			crossed[id] = true
		}
		led.mu.Unlock()
		d.Kill()
		done++
		if err := d.Start(); err != nil {
			t.Fatal(err)
		}
		if err := d.WaitReady(30 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	sendTime := time.Since(start)

	// Everything acknowledged must now arrive from the last daemon.
	led.mu.Lock()
	defer led.mu.Unlock()
	want := 0
	for _, r := range led.acked {
		want += len(r)
	}
	deadline := time.Now().Add(60 * time.Second)
	tl := newTally(s)
	var missing []string
	for {
		tl.update()
		missing = missing[:0]
		for id, rcpts := range led.acked {
			for _, r := range rcpts {
				if tl.count[[2]string{id, r}] == 0 {
					missing = append(missing, id+" -> "+r)
				}
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	drainTime := time.Since(start) - sendTime
	time.Sleep(time.Second) // a late duplicate would show up now
	tl.update()
	if tl.dsns > 0 {
		t.Errorf("%d DSNs: nothing in this test should bounce", tl.dsns)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Fatalf("%d of %d acknowledged deliveries never arrived, e.g. %q", len(missing), want, missing[:min(5, len(missing))])
	}

	dups, unackedArrived := 0, 0
	for key, n := range tl.count {
		rcpts, ok := led.acked[key[0]]
		if !ok {
			rcpts, ok = led.unacked[key[0]]
			if ok {
				unackedArrived++
			}
		}
		if !ok {
			t.Errorf("delivery of a message nobody sent: %q to %q", key[0], key[1])
			continue
		}
		if !contains(rcpts, key[1]) {
			t.Errorf("message %q delivered to %q, not one of its recipients %q", key[0], key[1], rcpts)
		}
		dups += n - 1
	}
	t.Logf("%d messages acknowledged (%d recipient deliveries), %d submissions failed during restarts, %d kills in %v, delivered %v later; "+
		"%d duplicate deliveries, %d deliveries of unacknowledged messages", len(led.acked), want, nFailed.Load(), done,
		sendTime.Round(time.Millisecond), drainTime.Round(time.Millisecond), dups, unackedArrived)
	if dups > done*inFlightPerKill {
		t.Errorf("%d duplicate deliveries, more than the %d transactions that can be in flight at %d kills", dups, done*inFlightPerKill, done)
	}
	// Judge every transaction of a message delivered twice or without its 250, then those of
	// messages that crossed a kill, up to maxJudged (the checker runs openssl several times per
	// transaction; all of them would double the test's time).
	const maxJudged = 50
	special := map[string]bool{}
	for key, n := range tl.count {
		_, ok := led.acked[key[0]]
		if n > 1 || !ok {
			special[key[0]] = true
		}
	}
	var pick []sink.Transaction
	deliveredCrossed := map[string]bool{}
	for _, tx := range s.Transactions() {
		if id := messageID(tx.Data); special[id] {
			pick = append(pick, tx)
		}
	}
	for _, tx := range s.Transactions() {
		id := messageID(tx.Data)
		if crossed[id] && !special[id] && tx.MailFrom != "" {
			deliveredCrossed[id] = true
			if len(pick) < maxJudged {
				pick = append(pick, tx)
			}
		}
	}
	judged := checkDelivered(t, pki, sent, pick, nil)
	t.Logf("privacy checker judged %d transactions: of %d messages delivered twice or unacknowledged, and of %d messages that crossed a kill",
		judged, len(special), len(deliveredCrossed))
	if len(deliveredCrossed) == 0 || judged < min(maxJudged, len(pick)) {
		t.Errorf("privacy checker judged %d of %d transactions; %d delivered messages crossed a kill", judged, len(pick), len(deliveredCrossed))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
