package queue_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/queue"
)

// journaling adds to proc's packages one with a reverse path of its own (the journal's).
type journaling struct{ proc }

func (j *journaling) Process(ctx context.Context, id string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	s, err := j.proc.Process(ctx, id, env, body)
	if err == nil {
		s.Packages = append(s.Packages, pkg("journal-sender@example.test", []string{"journal@example.test"}, []byte("\r\njournal\r\n")))
	}
	return s, err
}

// TestOutcome: Options.Outcome is told every recipient's result of every package's delivery
// attempt (not the DSN's), and a package with a reverse path other than the message's (the
// journal's) that fails bounces to no one: the DSN to the sender names only the sender's own
// recipient that failed, never the journal address.
func TestOutcome(t *testing.T) {
	s := newSink(t)
	e550 := &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
	s.RejectRcpt("c@example.test", e550)
	s.RejectRcpt("journal@example.test", e550)
	var mu sync.Mutex
	var got []string
	opts := baseOpts(t.TempDir())
	opts.Outcome = func(o queue.Outcome) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%d %s %s %v", o.Package, o.Recipient, o.State, o.Err != nil))
	}
	q, _ := running(t, opts, &journaling{proc{groups: [][]string{{"c@example.test"}}}}, newDeliverer(t, s))
	accept(t, q, 1, sender, "b@example.test", "c@example.test")
	waitEmpty(t, q, 30*time.Second)

	mu.Lock()
	slices.Sort(got)
	want := []string{"0 c@example.test failed true", "1 b@example.test delivered false", "2 journal@example.test failed true"}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes %q, want %q", got, want)
	}
	mu.Unlock()
	_, dsns := split(s.Messages())
	if len(dsns) != 1 {
		t.Fatalf("%d DSNs, want 1 (for c only)", len(dsns))
	}
	r := parseDSN(t, dsns[0])
	if _, ok := r.rcpts["c@example.test"]; !ok || len(r.rcpts) != 1 || strings.Contains(string(dsns[0].Data), "journal@") {
		t.Errorf("DSN recipients %v; it must name c alone, never the journal", r.rcpts)
	}
}
