package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"appliance/internal/testtext"
)

// shape is one message size and recipient mix of the issue. The addresses are users of the test
// PKI (softhsm-test/mkpki.sh) with RSA-2048 certificates, so the appliance can encrypt for all.
type shape struct {
	Name     string
	Size     int // body bytes, about
	To, Cc   []string
	Bcc      []string // envelope only, as clients submit Bcc
	From     string
	Packages int // packages the appliance makes with bcc = "individual": 1 + one per Bcc
	// Key is the sender's key type when it is not RSA-2048 ("p256": the sender frank, whose
	// key is ECDSA P-256); the HSM floor then counts that key's signatures.
	Key string
	// Base is the shape whose Postfix run this one is compared with (Postfix does not sign, so
	// the sender's key type makes no difference to it).
	Base string
	// ClientEncrypted: the client submits an S/MIME envelope it made itself (run -message), which
	// the appliance splits without decrypting; Size is its plaintext.
	ClientEncrypted bool
}

func bulk(n int) []string {
	var out []string
	for i := 1; i <= n; i++ {
		out = append(out, fmt.Sprintf("u%02d@example.test", i))
	}
	return out
}

var shapes = map[string]shape{
	"10k": {Name: "10k", Size: 10 << 10, To: []string{"bob@example.test"}},
	"50k": {Name: "50k", Size: 50 << 10, To: []string{"bob@example.test"},
		Cc: []string{"dave@example.test", "erin@example.test"}, Bcc: bulk(3)},
	"1m": {Name: "1m", Size: 1 << 20, To: []string{"bob@example.test"}, Bcc: bulk(20)},
	"10k-p256": {Name: "10k-p256", Size: 10 << 10, To: []string{"bob@example.test"},
		From: "frank@example.test", Key: "p256", Base: "10k"},
	"10m-enc": {Name: "10m-enc", Size: 10 << 20, To: []string{"bob@example.test"}, Bcc: bulk(20),
		ClientEncrypted: true},
	"10m": {Name: "10m", Size: 10 << 20, To: []string{"bob@example.test"}},
}

func init() {
	for k, s := range shapes {
		if s.From == "" {
			s.From = "alice@example.test"
		}
		s.Packages = 1 + len(s.Bcc)
		shapes[k] = s
	}
}

func shapeNames() []string {
	var n []string
	for k := range shapes {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func (s shape) rcpts() []string { return slices.Concat(s.To, s.Cc, s.Bcc) }

// wraps is the number of key wraps the appliance does per message: one per recipient
// certificate plus the sender's self-copy, wrapped once and shared by every package.
func (s shape) wraps() int { return len(s.rcpts()) + 1 }

// body is a text body of about s.Size bytes in 76-column CRLF lines, random so that nothing
// downstream can compress it away (testtext.Body: the benchmarks of the check read the same).
func (s shape) body() []byte { return testtext.Body(s.Size) }

// message is the RFC 5322 message with id as its Message-ID, sharing body.
func (s shape) header(id string, n int) []byte {
	var h strings.Builder
	fmt.Fprintf(&h, "From: Alice <%s>\r\n", s.From)
	fmt.Fprintf(&h, "To: %s\r\n", strings.Join(s.To, ", "))
	if len(s.Cc) > 0 {
		fmt.Fprintf(&h, "Cc: %s\r\n", strings.Join(s.Cc, ", "))
	}
	fmt.Fprintf(&h, "Subject: bench %s #%d\r\n", s.Name, n)
	fmt.Fprintf(&h, "Message-ID: %s\r\n", id)
	fmt.Fprintf(&h, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	if s.ClientEncrypted {
		// The client's entity follows with its own MIME header fields.
		return []byte(h.String())
	}
	h.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	return []byte(h.String())
}

type loadOptions struct {
	Target, Sink string
	Shape        shape
	Conns        int
	Duration     time.Duration
	Drain        time.Duration
	Watch        int
	// Entity is the client's S/MIME entity (its MIME header fields, a blank line, base64) for
	// a ClientEncrypted shape.
	Entity []byte
	// sinkShed, in tests, makes the sink answer a MAIL 451 while it returns true.
	sinkShed func() bool
}

// Backoff after a 4xx reply (a relay shedding load): a connection waits before its next MAIL,
// doubling from deferMin to deferMax and back to deferMin after a message is taken, so that a
// shedding relay is not kept busy refusing what it asked to be sent later.
const (
	deferMin = 2 * time.Millisecond
	deferMax = 100 * time.Millisecond
)

// tracker matches the sink's transactions with the messages submitted.
type tracker struct {
	mu       sync.Mutex
	inflight map[string]*tracked
	e2e      []time.Duration
	last     time.Time
	packages int
	stray    int // transactions with an unknown Message-ID
	done     chan struct{}
	closed   bool
	wantDone int // set when submission ends: close done once this many completed
}

type tracked struct {
	start time.Time
	want  int
	got   int
	pkgs  int
}

func newTracker() *tracker {
	return &tracker{inflight: map[string]*tracked{}, done: make(chan struct{}), wantDone: -1}
}

func (t *tracker) add(id string, want int, start time.Time) {
	t.mu.Lock()
	t.inflight[id] = &tracked{start: start, want: want}
	t.mu.Unlock()
}

// forget drops a message whose submission failed; anything of it that arrives later is stray.
func (t *tracker) forget(id string) {
	t.mu.Lock()
	delete(t.inflight, id)
	t.mu.Unlock()
}

func (t *tracker) onTx(tx sinkTx) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.inflight[tx.MessageID]
	if m == nil {
		t.stray++
		return
	}
	m.got += tx.Rcpts
	m.pkgs++
	t.packages++
	if m.got >= m.want {
		delete(t.inflight, tx.MessageID)
		t.e2e = append(t.e2e, tx.At.Sub(m.start))
		t.last = tx.At
		t.checkDone()
	}
}

func (t *tracker) checkDone() {
	if !t.closed && t.wantDone >= 0 && len(t.e2e) >= t.wantDone {
		t.closed = true
		close(t.done)
	}
}

// submitted says how many messages were accepted in all; done closes once all were relayed.
func (t *tracker) submitted(n int) {
	t.mu.Lock()
	t.wantDone = n
	t.checkDone()
	t.mu.Unlock()
}

func runLoad(o loadOptions) (Result, error) {
	res := Result{Kind: "relay", Shape: o.Shape.Name, Conns: o.Conns, LoadBefore: loadavg()}
	tr := newTracker()
	sk, err := newSink(o.Sink, tr.onTx, o.sinkShed)
	if err != nil {
		return res, err
	}
	defer sk.Close()

	var pt *procTree
	if o.Watch > 0 {
		if pt, err = watchTree(o.Watch, 100*time.Millisecond); err != nil {
			return res, err
		}
	}

	cpu0 := ownCPU()
	body := o.Shape.body()
	if o.Shape.ClientEncrypted {
		if len(o.Entity) == 0 {
			return res, fmt.Errorf("failed to run %s: the shape needs -message (a client's S/MIME entity)", o.Shape.Name)
		}
		body = o.Entity
	}
	// Dot-stuffed once here, so each submission writes the bytes as they are.
	body = dotStuff(body)
	rcpts := o.Shape.rcpts()
	runID := fmt.Sprintf("%x", time.Now().UnixNano())
	var (
		seq      atomic.Int64
		accepted atomic.Int64
		failed   atomic.Int64
		deferred atomic.Int64
		mu       sync.Mutex
		submit   []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	begin := time.Now()
	deadline := begin.Add(o.Duration)
	for range o.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *rawSMTP
			defer func() {
				if c != nil {
					c.quit()
					c.close()
				}
			}()
			var mine []time.Duration
			wait := time.Duration(0)
			for time.Now().Before(deadline) {
				if c == nil {
					var err error
					if c, err = dial(o.Target); err != nil {
						failed.Add(1)
						mu.Lock()
						firstErr = cmp(firstErr, err)
						mu.Unlock()
						time.Sleep(100 * time.Millisecond)
						continue
					}
				}
				n := int(seq.Add(1))
				id := fmt.Sprintf("<%d.%s@loadgen.bench>", n, runID)
				start := time.Now()
				tr.add(id, len(rcpts), start)
				if err := c.transaction(o.Shape.From, rcpts, dotStuff(o.Shape.header(id, n)), body); err != nil {
					tr.forget(id)
					if transient(err) && c.cmd("RSET", "250") == nil {
						deferred.Add(1)
						wait = min(max(2*wait, deferMin), deferMax)
						time.Sleep(wait/2 + rand.N(wait/2+1))
						continue
					}
					failed.Add(1)
					mu.Lock()
					firstErr = cmp(firstErr, err)
					mu.Unlock()
					c.close()
					c = nil
					continue
				}
				mine = append(mine, time.Since(start))
				accepted.Add(1)
				wait = 0
			}
			mu.Lock()
			submit = append(submit, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	tr.submitted(int(accepted.Load()))
	select {
	case <-tr.done:
	case <-time.After(o.Drain):
	}

	tr.mu.Lock()
	e2e := slices.Clone(tr.e2e)
	last, pkgs, stray, unfinished := tr.last, tr.packages, tr.stray, len(tr.inflight)
	tr.mu.Unlock()
	if pt != nil {
		rss, cpu := pt.Stop()
		res.PeakRSSMB = float64(rss) / (1 << 20)
		res.CPUSeconds = cpu.Seconds()
	}
	res.LoadAfter = loadavg()
	own := ownCPU() - cpu0
	res.SinkConns = int(sk.accepted.Load())
	res.Messages = len(e2e)
	res.Packages = pkgs
	res.Failed = int(failed.Load())
	res.Deferred = int(deferred.Load())
	res.Unfinished = unfinished
	if res.Messages == 0 {
		return res, fmt.Errorf("failed to measure %s: %w (failed submissions %d, stray %d, first error: %v)",
			o.Shape.Name, errNoMessages, res.Failed, stray, firstErr)
	}
	elapsed := last.Sub(begin)
	res.Seconds = elapsed.Seconds()
	res.MsgPerSec = float64(res.Messages) / elapsed.Seconds()
	res.PkgPerSec = float64(res.Packages) / elapsed.Seconds()
	res.SubmitP50ms, res.SubmitP99ms = ms(percentile(submit, 50)), ms(percentile(submit, 99))
	res.E2EP50ms, res.E2EP99ms = ms(percentile(e2e, 50)), ms(percentile(e2e, 99))
	if res.CPUSeconds > 0 {
		res.CPUPerMsgMs = res.CPUSeconds * 1000 / float64(res.Messages)
	}
	res.OwnCPUPerMsgMs = own.Seconds() * 1000 / float64(res.Messages)
	if firstErr != nil {
		fmt.Printf("loadgen: %d submissions failed; first error: %v\n", res.Failed, firstErr)
	}
	return res, nil
}

func cmp(old, err error) error {
	if old != nil {
		return old
	}
	return err
}

func dial(addr string) (*rawSMTP, error) {
	c, err := dialRaw(addr)
	if err != nil {
		return nil, fmt.Errorf("failed to connect to %q: %w", addr, err)
	}
	return c, nil
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[min(max(i-1, 0), len(s)-1)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
