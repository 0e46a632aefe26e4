package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"appliance/delivery"
	"appliance/queue"
)

// TestCrashChild is the process TestCrashRecovery kills: it accepts
// messages as fast as it can and prints "ACK n" once Accept returned, which
// is when the front end would answer 250.
func TestCrashChild(t *testing.T) {
	dir, addr := os.Getenv("QUEUE_CRASH_DIR"), os.Getenv("QUEUE_CRASH_SINK")
	if dir == "" {
		// Not a test of its own: the child process TestCrashRecovery runs.
		t.Skip("helper process for TestCrashRecovery")
	}
	first, _ := strconv.Atoi(os.Getenv("QUEUE_CRASH_FIRST"))
	d, err := delivery.New(delivery.Options{NextHop: addr, Hostname: "relay.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	opts := baseOpts(dir)
	opts.Workers = 4
	q, err := queue.Open(opts, &proc{groups: [][]string{{"c@example.test"}}}, d)
	if err != nil {
		t.Fatal(err)
	}
	go q.Run(context.Background())
	for i := first; ; i++ {
		if _, err := q.Accept(context.Background(), queue.Envelope{MailFrom: sender, RcptTo: []string{"b@example.test", "c@example.test"}},
			strings.NewReader(testMessage(i))); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ACK %d\n", i)
	}
}

// TestCrashRecovery kills the queue's process with SIGKILL at random moments
// while it accepts and delivers, restarts it each time, and checks at the
// end that every acknowledged message reached each recipient.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		// -short is for quick local runs; CI runs without it.
		t.Skip("kills processes")
	}
	const kills = 10
	dir := t.TempDir()
	sink := newSink(t)
	var mu sync.Mutex
	acked := map[int]bool{}
	for round := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$")
		cmd.Env = append(os.Environ(), "QUEUE_CRASH_DIR="+dir, "QUEUE_CRASH_SINK="+sink.Addr,
			"QUEUE_CRASH_FIRST="+strconv.Itoa(round*1_000_000))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		// In odd rounds the random moment is counted from the child's first acknowledgement: a
		// race-instrumented child on a busy machine can take longer than the whole window to
		// start, recover the spool and accept its first message, and then no round would kill
		// it while it accepts. Even rounds count from the start, and may kill it recovering.
		going := make(chan struct{})
		var once sync.Once
		go func() {
			defer close(done)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
					i, _ := strconv.Atoi(n)
					mu.Lock()
					acked[i] = true
					mu.Unlock()
					once.Do(func() { close(going) })
				}
			}
		}()
		if round%2 == 1 {
			select {
			case <-going:
			case <-done:
			case <-time.After(30 * time.Second):
			}
		}
		time.Sleep(time.Duration(100+rand.IntN(300)) * time.Millisecond)
		cmd.Process.Kill()
		<-done
		cmd.Wait()
	}
	if len(acked) < kills {
		t.Fatalf("only %d messages acknowledged; the children did not get going", len(acked))
	}

	q, _ := running(t, baseOpts(dir), &proc{groups: [][]string{{"c@example.test"}}}, newDeliverer(t, sink))
	waitEmpty(t, q, 60*time.Second)

	got := map[string]int{}
	for _, m := range sink.Messages() {
		id := strings.SplitN(strings.SplitN(string(m.Data), "Message-ID: <", 2)[1], "@", 2)[0]
		for _, r := range m.To {
			got[id+" "+r]++
		}
	}
	missing, dups := 0, 0
	for i := range acked {
		for _, r := range []string{"b@example.test", "c@example.test"} {
			if got[fmt.Sprintf("%d %s", i, r)] == 0 {
				missing++
			}
		}
	}
	for _, c := range got {
		dups += c - 1
	}
	t.Logf("%d acknowledged, %d (message, recipient) deliveries, %d duplicates after %d kills", len(acked), len(got), dups, kills)
	if missing > 0 {
		t.Errorf("%d acknowledged (message, recipient) pairs never delivered", missing)
	}
	// A duplicate needs a kill between the next hop's 250 and the state
	// commit: at most the transactions in flight, 4 workers with both
	// packages of their message each, per kill.
	if limit := kills * 4 * 2; dups > limit {
		t.Errorf("%d duplicates, more than the %d that can be in flight at the kills", dups, limit)
	}
}
