package smime_test

import (
	"slices"
	"testing"

	"appliance/cms"
	"appliance/smime"
)

func TestInspectHeaders(t *testing.T) {
	msg := "Received: from a (b) by relay.example.test for <dave@example.test>; Sat, 28 Nov 2026 15:52:36 +0000\r\n" +
		"Return-Path: <alice@example.test>\r\nFrom: Alice <alice@example.test>\r\nTo: Bob <BOB@example.test>\r\n" +
		"Bcc: erin@example.test\r\nSubject: hi\r\n\r\nbody\r\n"
	r, err := smime.Inspect("m.eml", []byte(msg), func(*cms.RecipientInfo) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if r.File != "m.eml" || r.Kind != "plain" || r.Envelopes != 0 || len(r.Recipients) != 0 {
		t.Fatalf("report %+v", r)
	}
	want := []string{"alice@example.test", "bob@example.test", "dave@example.test", "erin@example.test"}
	if !slices.Equal(r.Revealed, want) {
		t.Fatalf("revealed %q, want %q", r.Revealed, want)
	}
	if _, err := smime.Inspect("bad", []byte("no header end"), nil); err == nil {
		t.Fatal("a message without a header was inspected")
	}
}
