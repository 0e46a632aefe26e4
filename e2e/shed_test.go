package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
	"appliance/metrics"
)

// TestLoadShedding: with the HSM gone (messages wait to be sealed) or the next hop gone
// (sealed messages wait in the spool), the daemon takes mail up to the threshold, then answers
// a new MAIL 451 4.3.2 and says why in its log; once the trouble ends, every message it took is
// delivered and new mail is taken again.
func TestLoadShedding(t *testing.T) {
	tests := []struct {
		name, key, reason string
		hsm               bool // take the token away, else the next hop
	}{
		{name: "ok hsm backlog", key: "shed_hsm_backlog", reason: "hsm_backlog", hsm: true},
		{name: "ok spool messages", key: "shed_spool_messages", reason: "spool_messages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := softhsmtest.Setup(t)
			Build(t)
			own := OwnToken(t, env)
			s, err := sink.Start(sink.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			cfg := NewConfig(t, own, s.Addr())
			cfg.Queue.Retry = []string{"1s"}
			path, err := cfg.WriteWith(t.TempDir(), `reconnect_max = "500ms"`)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			maddr := FreeAddr(t)
			text := strings.Replace(string(b), "[smtp]\n", fmt.Sprintf("[smtp]\n%s = 3\n", tt.key), 1) +
				fmt.Sprintf("\n[metrics]\nlisten = %q\n", maddr)
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			var restore func()
			if tt.hsm {
				text = strings.Replace(text, "[hsm]\n", "[hsm]\nwait_for_token = true\n", 1)
				if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				restore = takeToken(t, own)
			} else {
				if err := s.Down(); err != nil {
					t.Fatal(err)
				}
				restore = func() {
					if err := s.Up(); err != nil {
						t.Fatal(err)
					}
				}
			}
			d := StartDaemonFile(t, own, path, cfg.SMTP.Listen)

			// Take mail until a MAIL is shed; the load is sampled once a second.
			ids := map[string][]string{}
			shed := false
			for i := 0; i < 20 && !shed; i++ {
				m := Message{From: Sender, To: []string{bob}, Subject: fmt.Sprintf("load %d", i), Text: "x\n"}
				raw := m.Bytes()
				res, err := SubmitGo(d.Addr, Sender, []string{bob}, raw)
				if err != nil {
					t.Fatal(err)
				}
				var se *smtp.SMTPError
				switch {
				case res.Mail == nil && res.Data == nil:
					ids[messageID(raw)] = []string{bob}
				case errors.As(res.Mail, &se) && se.Code == 451 && se.EnhancedCode == (smtp.EnhancedCode{4, 3, 2}):
					shed = true
				default:
					t.Fatalf("submission %d: MAIL %v, DATA %v", i, res.Mail, res.Data)
				}
				time.Sleep(300 * time.Millisecond)
			}
			if !shed {
				t.Fatalf("no MAIL shed after %d messages taken", len(ids))
			}
			if len(ids) < 3 {
				t.Errorf("shed after %d messages, threshold 3", len(ids))
			}
			t.Logf("shed after %d messages taken", len(ids))
			if err := d.WaitLog(`"reason":"`+tt.reason+`"`, 1, 5*time.Second); err != nil {
				t.Errorf("the log does not say why: %v", err)
			}
			got, err := metrics.Scrape(context.Background(), "http://"+maddr+"/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if n := got[`appliance_smtp_mail_shed_total{reason="`+tt.reason+`"}`]; n < 1 {
				t.Errorf("shed MAILs counted %v for %s", n, tt.reason)
			}

			restore()
			// Nothing taken is lost.
			waitDelivered(t, s, ids, 60*time.Second)
			// And new mail is taken again once the sample shows the backlog gone.
			deadline := time.Now().Add(20 * time.Second)
			for {
				m := Message{From: Sender, To: []string{bob}, Subject: "after", Text: "y\n"}
				raw := m.Bytes()
				res, err := SubmitGo(d.Addr, Sender, []string{bob}, raw)
				if err != nil {
					t.Fatal(err)
				}
				if res.Mail == nil && res.Data == nil {
					waitDelivered(t, s, map[string][]string{messageID(raw): {bob}}, 30*time.Second)
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("mail still refused after the trouble ended: MAIL %v, DATA %v", res.Mail, res.Data)
				}
				time.Sleep(500 * time.Millisecond)
			}
			if err := d.WaitLog("load shedding ended", 1, 5*time.Second); err != nil {
				t.Errorf("the log does not say shedding ended: %v", err)
			}
		})
	}
}
