package passthrough

import (
	"errors"
	"testing"

	"appliance/queue"
	"appliance/smime"
)

// TestInspectPlain: a message without CMS at the top has nothing to split; the mode says so
// rather than planning (the splitting itself is tested through the pipeline on SoftHSM2).
func TestInspectPlain(t *testing.T) {
	msg := []byte("From: alice@example.test\r\nTo: bob@example.test\r\nContent-Type: text/plain\r\n\r\nhi\r\n")
	s := New(Options{})
	_, err := s.Inspect(queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test"}}, msg, smime.Classify(msg))
	if !errors.Is(err, ErrNotClientEncrypted) {
		t.Fatalf("Inspect: %v", err)
	}
}
