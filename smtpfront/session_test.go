package smtpfront

import (
	"strings"
	"testing"
)

// TestHeaderOriginators: every instance of every originator field must be a
// sender the client may use, and a field RFC 5322 allows once comes once.
func TestHeaderOriginators(t *testing.T) {
	t.Parallel()
	const to = "To: bob@example.test\r\n"
	tests := []struct {
		name, hdr, want string
	}{
		{"ok from", "From: alice@example.test\r\n" + to, "250 2.0.0"},
		{"ok resent by the sender", "Resent-From: alice@example.test\r\nResent-To: carol@example.test\r\nFrom: Alice <alice@example.test>\r\n" + to, "250 2.0.0"},
		{"ok two resent blocks", "Resent-From: alice@example.test\r\nResent-To: carol@example.test\r\nResent-From: alice@example.test\r\nFrom: alice@example.test\r\n" + to, "250 2.0.0"},
		{"fail second from field", "From: alice@example.test\r\nFrom: mallory@example.test\r\n" + to, "554 5.6.0"},
		{"fail second from field naming the same sender", "From: alice@example.test\r\nFrom: alice@example.test\r\n" + to, "554 5.6.0"},
		{"fail second sender field", "From: alice@example.test\r\nSender: alice@example.test\r\nSender: mallory@example.test\r\n" + to, "554 5.6.0"},
		{"fail second to field", "From: alice@example.test\r\n" + to + to, "554 5.6.0"},
		{"fail second subject", "From: alice@example.test\r\nSubject: a\r\nSubject: b\r\n" + to, "554 5.6.0"},
		{"fail resent-from not authorized", "Resent-From: mallory@example.test\r\nFrom: alice@example.test\r\n" + to, "550 5.7.1"},
		{"fail resent-sender not authorized", "Resent-From: alice@example.test\r\nResent-Sender: mallory@example.test\r\nFrom: alice@example.test\r\n" + to, "550 5.7.1"},
		{"fail older resent block not authorized", "Resent-From: alice@example.test\r\nResent-To: c@example.test\r\nResent-From: mallory@example.test\r\nFrom: alice@example.test\r\n" + to, "550 5.7.1"},
		{"fail second author in from", "From: alice@example.test, mallory@example.test\r\n" + to, "550 5.7.1"},
		{"fail malformed resent-sender", "Resent-Sender: not an address\r\nFrom: alice@example.test\r\n" + to, "550 5.6.0"},
		{"fail empty from", "From: \r\n" + to, "550 5.6.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, Options{}, newFileSpool(t), newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			for _, s := range transaction("alice@example.test", "bob@example.test", tt.hdr+"\r\nbody\r\n", tt.want) {
				if got := rc.cmd(s.send); !strings.HasPrefix(code(got), s.want) {
					t.Fatalf("after %.40q: reply %q, want %q", s.send, got, s.want)
				}
			}
		})
	}
}

// TestListPostOriginators: a post only to lists is judged by the lists'
// posting rules, for every originator field, not only MAIL FROM.
func TestListPostOriginators(t *testing.T) {
	for _, tc := range []struct {
		name, hdr, want string
	}{
		{"ok olivia posts to team", "From: olivia@example.org\r\n", "250"},
		{"fail olivia resent by mallory", "Resent-From: mallory@example.org\r\nFrom: olivia@example.org\r\n", "550 5.7.1"},
		{"fail olivia with mallory as sender", "From: olivia@example.org\r\nSender: mallory@example.org\r\n", "550 5.7.1"},
		{"fail two from fields", "From: olivia@example.org\r\nFrom: olivia@example.org\r\n", "554 5.6.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, newFileSpool(t), listPolicy{newTestPolicy()})
			c := dialRaw(t, ts.addr)
			c.cmd("EHLO client.example.org")
			if got := c.cmd("MAIL FROM:<olivia@example.org>"); !strings.HasPrefix(got, "250") {
				t.Fatalf("MAIL = %q", got)
			}
			if got := c.cmd("RCPT TO:<team@example.test>"); !strings.HasPrefix(got, "250") {
				t.Fatalf("RCPT = %q", got)
			}
			c.cmd("DATA")
			c.send(tc.hdr + "Subject: s\r\n\r\nhi\r\n.\r\n")
			if got := c.reply(); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("end of DATA = %q, want %s", got, tc.want)
			}
		})
	}
}

// TestHeaderPlanRefusals: what sealing would refuse is refused at the end of
// DATA, before anything is spooled.
func TestHeaderPlanRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, hdr, want string
	}{
		{"ok content field naming a visible recipient", "From: alice@example.test\r\nTo: bob@example.test\r\nContent-Description: for bob@example.test\r\n", "250 2.0.0"},
		{"fail content field naming the hidden recipient", "From: alice@example.test\r\nTo: carol@example.test\r\nContent-Description: for =?utf-8?q?bob=40example.test?=\r\n", "554 5.7.0"},
		{"fail unparsable cc", "From: alice@example.test\r\nTo: bob@example.test\r\nCc: <<nobody\r\n", "550 5.6.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ts := startServer(t, Options{}, newFileSpool(t), newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			for _, s := range transaction("alice@example.test", "bob@example.test", tt.hdr+"\r\nbody\r\n", tt.want) {
				if got := rc.cmd(s.send); !strings.HasPrefix(code(got), s.want) {
					t.Fatalf("after %.40q: reply %q, want %q", s.send, got, s.want)
				}
			}
		})
	}
}
