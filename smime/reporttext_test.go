package smime_test

import (
	"bytes"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/smime"
)

func TestHeaderEnvelopeAndSenders(t *testing.T) {
	msg := []byte("From: Alice <alice@example.test>\r\nSender: sec@example.test\r\nTo: bob@example.test, Carol <carol@example.test>\r\n" +
		"Cc: dave@example.test\r\nBcc: erin@example.test\r\nSubject: x\r\n\r\nbody\r\n")
	from, rcpts, err := smime.HeaderEnvelope(msg)
	if err != nil || from != "alice@example.test" || strings.Join(rcpts, ",") != "bob@example.test,carol@example.test,dave@example.test,erin@example.test" {
		t.Fatalf("HeaderEnvelope = %q, %v, %v", from, rcpts, err)
	}
	senders, err := smime.HeaderSenders(msg)
	if err != nil || strings.Join(senders, ",") != "alice@example.test,sec@example.test" {
		t.Fatalf("HeaderSenders = %v, %v", senders, err)
	}
	for _, bad := range []string{"To: bob@example.test\r\n\r\nx\r\n", "From: <<<\r\n\r\nx\r\n"} {
		if _, err := smime.HeaderSenders([]byte(bad)); err == nil {
			t.Errorf("HeaderSenders(%q) accepted it", bad)
		}
	}
}

func TestReportWriteText(t *testing.T) {
	msg := "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nBcc: erin@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
	r, err := smime.Inspect("m.eml", []byte(msg), func(*cms.RecipientInfo) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	r.WriteText(&b, &smime.SplitPlan{
		Packages: []smime.PlannedPackage{{Recipients: []string{"bob@example.test"}, RecipientInfos: []int{1, 2}, Owners: []string{"bob@example.test"}},
			{Recipients: []string{"erin@example.test"}, Hidden: true, RecipientInfos: []int{3}, Owners: []string{"erin@example.test"}}},
		Dropped: []smime.DroppedInfo{{Index: 4, Why: "unknown owner"}},
		Refused: []smime.RefusedRcpt{{Recipient: "x@example.test", Status: "5.7.1", Reason: "no certificate"}},
	})
	for _, w := range []string{"m.eml: plain\n", "  header Bcc:", "  reveals: ",
		"    package 1 (visible) to bob@example.test: recipientinfos #1,#2 of bob@example.test\n",
		"    package 2 (hidden) to erin@example.test: recipientinfos #3 of erin@example.test\n",
		"    recipientinfo #4 dropped: unknown owner\n", "    <x@example.test> refused: 5.7.1 no certificate\n"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
	b.Reset()
	r.WriteText(&b, &smime.SplitPlan{Error: "not client-encrypted"})
	if !strings.HasSuffix(b.String(), "  split: cannot plan: not client-encrypted\n") {
		t.Errorf("plan error:\n%s", b.String())
	}
}
