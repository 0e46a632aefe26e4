package pipeline_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"appliance/compliance"
	"appliance/pipeline"
	"appliance/queue"
)

// TestPackageRecipientInfos: each package the pipeline made names its RecipientInfos (one per
// certificate it was wrapped for, as the journal report and the audit trail list them), and a
// package written twice (DKIM signs the written form, then the spool writes it) is told to
// Events.Sealed once.
func TestPackageRecipientInfos(t *testing.T) {
	r := setup(t)
	var sealed atomic.Int32
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice},
		Hostname: "relay.example.test", Logger: slog.New(slog.DiscardHandler),
		Events: pipeline.Events{Sealed: func(string, string) { sealed.Add(1) }},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol")}
	out, err := p.Process(context.Background(), "j1", env, strings.NewReader(toCc+"\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Packages) == 0 {
		t.Fatal("no package")
	}
	for i, pk := range out.Packages {
		ris, err := compliance.PackageRecipientInfos(pk.Body)
		if err != nil {
			t.Fatal(err)
		}
		// One per recipient (self_copy is not set here).
		if len(ris) != len(pk.RcptTo) {
			t.Errorf("package %d for %v: RecipientInfos %v", i, pk.RcptTo, ris)
		}
		for _, id := range ris {
			if !strings.HasPrefix(id, "issuer-serial:") && !strings.HasPrefix(id, "ski:") {
				t.Errorf("package %d: RecipientInfo id %q", i, id)
			}
		}
		for range 2 {
			if _, err := pk.Body.WriteTo(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := int(sealed.Load()); n != len(out.Packages) {
		t.Errorf("Events.Sealed told %d times for %d packages written twice each", n, len(out.Packages))
	}
	if ris, err := compliance.PackageRecipientInfos(strings.NewReader("not a package")); ris != nil || err != nil {
		t.Errorf("an unknown body: %v %v", ris, err)
	}
}
