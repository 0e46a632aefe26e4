package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"

	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/split"
)

// TestEvents: the pipeline tells its observer what it did: each spooled message's class, each
// package once it is written with the mode and profile recorded for it, and each whole-message
// refusal with its stage and reason (end of DATA, or sealing).
func TestEvents(t *testing.T) {
	r := setup(t)
	var mu sync.Mutex
	var got []string
	add := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, s)
	}
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice},
		Hostname: "relay.example.test", Logger: slog.New(slog.DiscardHandler),
		Events: pipeline.Events{
			Classified: func(class string) { add("class " + class) },
			Refused:    func(stage, reason string) { add("refused " + stage + " " + reason) },
			Sealed:     func(mode, profile string) { add("sealed " + mode + " " + profile) },
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol")}

	// Plain mail: one package per profile group, each told once written, not before.
	out, err := p.Process(context.Background(), "e1", env, strings.NewReader(toCc+"\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ev := take(); !slices.Equal(ev, []string{"class plain"}) {
		t.Fatalf("before the spool writes: %v", ev)
	}
	for _, pk := range out.Packages {
		if _, err := pk.Body.WriteTo(io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	ev := take()
	if len(ev) != len(out.Packages) || len(ev) == 0 {
		t.Fatalf("%d packages, events %v", len(out.Packages), ev)
	}
	for i, e := range ev {
		if want := "sealed " + out.Packages[i].Mode + " " + out.Packages[i].Profile; e != want || out.Packages[i].Mode != seal.ModeEncrypted {
			t.Errorf("event %q, want %q", e, want)
		}
	}

	// Signed over encrypted: refused at end of DATA and again if it was spooled anyway.
	der := r.encrypt(t, []byte(content), []string{"alice", "bob", "carol"}, encryptOpts{})
	msg := []byte(toCc + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
		"Content-Type: text/plain\r\n\r\nsee attached\r\n--m\r\n" + string(mimeMessage("", envelopedType, der)) + "\r\n--m--\r\n")
	if err := p.CheckMessage(context.Background(), env, msg); err == nil {
		t.Fatal("CheckMessage accepted an envelope in a part")
	}
	if _, err := p.Process(context.Background(), "e2", env, strings.NewReader(string(msg))); err == nil {
		t.Fatal("Process accepted an envelope in a part")
	}
	want := []string{"refused data " + pipeline.ReasonUnaccountable, "class refused", "refused seal " + pipeline.ReasonUnaccountable}
	if ev := take(); !slices.Equal(ev, want) {
		t.Fatalf("events %v, want %v", ev, want)
	}

	// A sender the appliance does not sign as: refused while sealing, for its own reason.
	bad := queue.Envelope{MailFrom: "mallory@example.org", RcptTo: rcptsOf("bob")}
	if _, err := p.Process(context.Background(), "e3", bad, strings.NewReader(toCc+"\r\nhi\r\n")); err == nil {
		t.Fatal("Process sealed for an unknown sender")
	}
	if ev := take(); !slices.Equal(ev, []string{"class plain", "refused seal " + pipeline.ReasonSender}) {
		t.Fatalf("events %v", ev)
	}
	if pipeline.RefusalReason(split.ErrRecipientInfoRejected) != pipeline.ReasonRecipientInfo {
		t.Error("RefusalReason does not name a rejected RecipientInfo")
	}
}
