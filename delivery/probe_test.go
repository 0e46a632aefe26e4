package delivery

import (
	"net/textproto"
	"strings"
	"testing"
	"time"
)

type lines struct{ got []string }

func (l *lines) OK(what, detail string)      { l.got = append(l.got, "ok "+what+": "+detail) }
func (l *lines) Warn(what, detail string)    { l.got = append(l.got, "warn "+what+": "+detail) }
func (l *lines) Fail(what string, err error) { l.got = append(l.got, "FAIL "+what+": "+err.Error()) }

// hop answers one connection with greeting, and ehlo to EHLO.
func hop(t *testing.T, greeting, ehlo string) string {
	t.Helper()
	return scriptedHop(t, greeting, func(tp *textproto.Conn, verb, _ string) bool {
		switch verb {
		case "EHLO":
			tp.W.WriteString(ehlo)
		case "STARTTLS":
			tp.W.WriteString("220 go ahead\r\n")
			tp.W.Flush()
			return false // no handshake follows: the client's fails
		default:
			tp.W.WriteString("221 bye\r\n")
			tp.W.Flush()
			return false
		}
		return tp.W.Flush() == nil
	})
}

func TestCheckNextHop(t *testing.T) {
	tests := []struct {
		name, greeting, ehlo string
		want                 []string // prefixes, in order
	}{
		{"ok without STARTTLS", "220 hop.example.test ESMTP ready\r\n", "250-hop.example.test\r\n250 8BITMIME\r\n",
			[]string{"ok next hop %s: greets 220 hop.example.test ESMTP ready", "warn next hop %s: no STARTTLS offered"}},
		{"fail STARTTLS handshake", "220 hop\r\n", "250-hop\r\n250 STARTTLS\r\n",
			[]string{"ok next hop %s: greets 220 hop", "FAIL next hop %s STARTTLS: handshake: "}},
		{"fail greeting", "554 go away\r\n", "",
			[]string{"FAIL next hop %s: greeting: "}},
		{"fail EHLO", "220 hop\r\n", "502 no\r\n",
			[]string{"ok next hop %s: greets 220 hop", "FAIL next hop %s: EHLO relay.example.test: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := hop(t, tt.greeting, tt.ehlo)
			r := &lines{}
			CheckNextHop(r, addr, "relay.example.test", 5*time.Second)
			if len(r.got) != len(tt.want) {
				t.Fatalf("got %q, want %d lines", r.got, len(tt.want))
			}
			for i, w := range tt.want {
				if w = strings.ReplaceAll(w, "%s", addr); !strings.HasPrefix(r.got[i], w) {
					t.Errorf("line %d: %q, want prefix %q", i, r.got[i], w)
				}
			}
		})
	}
	r := &lines{}
	CheckNextHop(r, "127.0.0.1:1", "relay.example.test", 5*time.Second)
	if len(r.got) != 1 || !strings.HasPrefix(r.got[0], "FAIL next hop 127.0.0.1:1: ") {
		t.Errorf("closed port: %q", r.got)
	}
}
