package smtpfront

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// listPolicy is testPolicy plus two lists: open@ (anyone may post) and team@ (only
// olivia@example.org may post).
type listPolicy struct{ *testPolicy }

func (listPolicy) IsList(addr string) bool {
	return addr == "open@example.test" || addr == "team@example.test"
}

func (listPolicy) CheckPoster(_ context.Context, list, from string) error {
	if list == "open@example.test" || from == "olivia@example.org" {
		return nil
	}
	return &PolicyError{Text: "you may not post to this list", Err: fmt.Errorf("%q may not post to %q", from, list)}
}

var _ ListPolicy = listPolicy{}

func TestListPosting(t *testing.T) {
	const body = "Subject: s\r\n\r\nhi\r\n.\r\n"
	tests := []struct {
		name    string
		policy  Policy
		from    string // MAIL FROM and header From
		rcpts   []string
		replies []string // RCPT replies in order, then the DATA reply
	}{
		{"ok outsider to open list", listPolicy{newTestPolicy()}, "mallory@example.org",
			[]string{"open@example.test"}, []string{"250", "250"}},
		{"ok null sender to open list", listPolicy{newTestPolicy()}, "",
			[]string{"open@example.test"}, []string{"250", "250"}},
		{"ok listed poster to team list", listPolicy{newTestPolicy()}, "olivia@example.org",
			[]string{"team@example.test"}, []string{"250", "250"}},
		{"fail outsider to team list", listPolicy{newTestPolicy()}, "mallory@example.org",
			[]string{"team@example.test"}, []string{"550 5.7.1"}},
		{"fail configured sender not a poster of team list", listPolicy{newTestPolicy()}, "alice@example.test",
			[]string{"team@example.test", "bob@example.test"}, []string{"550 5.7.1", "250", "250"}},
		{"ok outsider to list, refused elsewhere", listPolicy{newTestPolicy()}, "mallory@example.org",
			[]string{"open@example.test", "bob@example.test"}, []string{"250", "550 5.7.1", "250"}},
		{"ok configured sender to list and recipient", listPolicy{newTestPolicy()}, "alice@example.test",
			[]string{"open@example.test", "bob@example.test"}, []string{"250", "250", "250"}},
		{"fail outsider without list policy", newTestPolicy(), "mallory@example.org",
			[]string{"open@example.test"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, newFileSpool(t), tc.policy)
			c := dialRaw(t, ts.addr)
			c.cmd("EHLO client.example.org")
			mail := c.cmd("MAIL FROM:<" + tc.from + ">")
			if tc.replies == nil {
				if !strings.HasPrefix(mail, "550 5.7.1") {
					t.Fatalf("MAIL = %q, want the sender refused at once", mail)
				}
				return
			}
			if !strings.HasPrefix(mail, "250") {
				t.Fatalf("MAIL = %q", mail)
			}
			accepted := 0
			for i, r := range tc.rcpts {
				got := c.cmd("RCPT TO:<" + r + ">")
				if !strings.HasPrefix(got, tc.replies[i]) {
					t.Fatalf("RCPT %s = %q, want %s", r, got, tc.replies[i])
				}
				if strings.HasPrefix(got, "250") {
					accepted++
				}
			}
			if accepted == 0 {
				return
			}
			if got := c.cmd("DATA"); !strings.HasPrefix(got, "354") {
				t.Fatalf("DATA = %q", got)
			}
			from := tc.from
			if from == "" {
				from = "daemon@example.org"
			}
			c.send("From: " + from + "\r\n" + body)
			want := tc.replies[len(tc.rcpts)]
			if got := c.reply(); !strings.HasPrefix(got, want) {
				t.Fatalf("end of DATA = %q, want %s", got, want)
			}
		})
	}
}

// TestListPostingHeaderFrom: a post only to lists is not refused for its header From, but one
// that also goes to an ordinary recipient is, as before.
func TestListPostingHeaderFrom(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rcpts []string
		want  string
	}{
		{"ok lists only", []string{"open@example.test"}, "250"},
		{"fail list and recipient", []string{"open@example.test", "bob@example.test"}, "550 5.7.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, Options{}, newFileSpool(t), listPolicy{newTestPolicy()})
			c := dialRaw(t, ts.addr)
			c.cmd("EHLO client.example.org")
			if got := c.cmd("MAIL FROM:<alice@example.test>"); !strings.HasPrefix(got, "250") {
				t.Fatalf("MAIL = %q", got)
			}
			for _, r := range tc.rcpts {
				if got := c.cmd("RCPT TO:<" + r + ">"); !strings.HasPrefix(got, "250") {
					t.Fatalf("RCPT = %q", got)
				}
			}
			c.cmd("DATA")
			c.send("From: mallory@example.org\r\nSubject: s\r\n\r\nhi\r\n.\r\n")
			if got := c.reply(); !strings.HasPrefix(got, tc.want) {
				t.Fatalf("end of DATA = %q, want %s", got, tc.want)
			}
		})
	}
	t.Run("fail lists only without From", func(t *testing.T) {
		ts := startServer(t, Options{}, newFileSpool(t), listPolicy{newTestPolicy()})
		c := dialRaw(t, ts.addr)
		c.cmd("EHLO client.example.org")
		c.cmd("MAIL FROM:<mallory@example.org>")
		c.cmd("RCPT TO:<open@example.test>")
		c.cmd("DATA")
		c.send("Subject: s\r\n\r\nhi\r\n.\r\n")
		if got := c.reply(); !strings.HasPrefix(got, "550 5.6.0") {
			t.Fatalf("end of DATA = %q, want the message refused for its missing From", got)
		}
	})
}
