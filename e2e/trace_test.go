package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// traceFieldCases are header fields in which an earlier hop, a client or a user can leave a
// recipient's address: trace fields naming envelope recipients, receipt requests, and a field no
// list knows about. Each value names dave, the hidden recipient.
var traceFieldCases = []struct {
	field, value string
}{
	{"Envelope-To", dave},
	{"X-Envelope-To", "<" + dave + ">"},
	{"X-Envelope-Recipient", dave},
	{"Original-Recipient", "rfc822;" + dave},
	{"X-Original-Recipient", "rfc822; " + dave},
	{"X-Original-To", dave},
	{"Delivered-To", dave},
	{"X-Rcpt-To", "<" + dave + ">"},
	{"X-Real-To", dave},
	{"Apparently-To", dave},
	{"X-Apparently-To", dave},
	{"X-Forwarded-To", dave},
	{"Received", "from mx.example.test (mx.example.test [192.0.2.1]) by relay.example.test with ESMTP id 4Bq1 for <" + dave + ">; Thu, 1 Jan 2026 00:00:00 +0000"},
	{"Return-Path", "<" + dave + ">"},
	{"Disposition-Notification-To", "Dave <" + dave + ">"},
	{"Return-Receipt-To", dave},
	{"Resent-Bcc", dave},
}

// TestTraceFields submits, for every field in traceFieldCases, a message to bob with dave as a
// hidden (envelope-only) recipient and dave's address in that field, through `serve`, and runs the
// privacy checker on everything the next hop received: dave's address must not reach bob's
// package. Refusing the message is also safe, and logged; delivering it with the field intact is
// the leak.
func TestTraceFields(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	delivered := 0
	for _, tc := range traceFieldCases {
		t.Run(tc.field, func(t *testing.T) {
			r.sink.Reset()
			m := Message{From: alice, To: []string{bob}, Subject: "trace " + tc.field, Text: "hello\n"}
			raw := []byte(tc.field + ": " + tc.value + "\r\n" + string(m.Bytes()))
			rcpt := []string{bob, dave}
			res, err := SubmitGo(r.daemon.Addr, alice, rcpt, raw)
			if err != nil {
				t.Fatal(err)
			}
			if res.Mail != nil {
				t.Fatalf("MAIL refused: %v", res.Mail)
			}
			if res.Data != nil {
				var se *smtp.SMTPError
				if !errors.As(res.Data, &se) || se.Code < 500 {
					t.Fatalf("DATA refused without a permanent failure: %v", res.Data)
				}
				t.Logf("%s: refused: %v", tc.field, res.Data)
				return
			}
			accepted := res.Accepted(rcpt)
			if len(accepted) != 2 {
				t.Fatalf("accepted %v, want %v", accepted, rcpt)
			}
			exp := Expect{From: alice, To: m.To, Rcpt: accepted, Message: raw}
			txs, err := WaitPackages(r.sink, 2, 90*time.Second, 300*time.Millisecond)
			if err != nil {
				t.Fatalf("%v (got %v)", err, rcptSets(txs))
			}
			if _, err := r.checker.Check(context.Background(), exp, txs); err != nil {
				t.Fatalf("%s: %s in it reached another package:\n%v", tc.field, dave, err)
			}
			delivered++
		})
	}
	t.Logf("%d messages delivered and checked", delivered)
}

// TestRIDSKI runs `serve` with rid = "ski" and requires every RecipientInfo of what it delivers
// to name its certificate by subject key identifier, as the privacy checker (openssl) reads them.
func TestRIDSKI(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Policy.RID = "ski" })
	exp := r.send(t, submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "ski", Text: "by key identifier\n"},
		rcpt: []string{bob, carol, dave}})
	pkgs := r.expect(t, exp, 2)
	n := 0
	for _, p := range pkgs {
		for _, id := range p.CMS.Recipients {
			if id.SKI == "" {
				t.Errorf("package to %v: RecipientInfo %v is not by subject key identifier", p.Tx.RcptTo, id)
			}
			n++
		}
	}
	// bob, carol and alice's self-copy; dave and alice.
	if n != 5 {
		t.Fatalf("%d RecipientInfos, want 5", n)
	}
}
