package e2e

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// TestAuditLog checks the daemon's JSON log against what the next hop really received: one audit
// line per package naming its envelope recipients and the owners of its RecipientInfos (as
// openssl reads them, through the checker), and nothing of the content or the PIN anywhere.
func TestAuditLog(t *testing.T) {
	t.Parallel()
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	d := StartDaemon(t, env, cfg)

	const secretSubject, secretText = "quarterly numbers zq7", "the body text xk9 must not be logged"
	m := Message{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave}, Subject: secretSubject, Text: secretText}
	res, err := SubmitGo(d.Addr, alice, []string{bob, carol, dave}, m.Bytes())
	if err != nil || res.Data != nil {
		t.Fatalf("submission: %v %v", err, res.Data)
	}
	txs, err := WaitPackages(s, 2, 60*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := (&Checker{PKI: pki, Tmp: t.TempDir()}).Check(context.Background(),
		Expect{From: alice, To: m.To, Cc: m.Cc, Bcc: m.Bcc, Rcpt: []string{bob, carol, dave}}, txs)
	if err != nil {
		t.Fatal(err)
	}
	// The delivery lines come after the sink's 250.
	waitFor(t, 10*time.Second, "delivery log lines", func() bool { return strings.Contains(d.Log(), `"msg":"finished"`) })

	type line map[string]any
	var lines []line
	for _, raw := range strings.Split(d.Log(), "\n") {
		if !strings.HasPrefix(raw, "{") {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(raw), &l); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", raw, err)
		}
		lines = append(lines, l)
	}
	strs := func(v any) []string {
		var out []string
		for _, e := range v.([]any) {
			out = append(out, norm(e.(string)))
		}
		slices.Sort(out)
		return out
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"ok one audit line per package, matching what was delivered", func(t *testing.T) {
			var audit []line
			for _, l := range lines {
				if l["msg"] == "package" {
					audit = append(audit, l)
				}
			}
			if len(audit) != len(pkgs) {
				t.Fatalf("%d audit lines for %d packages", len(audit), len(pkgs))
			}
			for _, p := range pkgs {
				rcpt := sorted(normAll(p.Tx.RcptTo))
				found := false
				for _, a := range audit {
					if slices.Equal(strs(a["rcpt_to"]), rcpt) {
						found = true
						owners := slices.Compact(strs(a["recipientinfo_owners"]))
						if !slices.Equal(owners, p.Owners) {
							t.Errorf("audit line for %v names owners %v; the package's RecipientInfos belong to %v", rcpt, owners, p.Owners)
						}
						if a["msg_id"] == nil && a["id"] == nil {
							t.Errorf("audit line for %v has no message id", rcpt)
						}
					}
				}
				if !found {
					t.Errorf("no audit line for the package to %v", rcpt)
				}
			}
		}},
		{"ok every step has a message id and counts", func(t *testing.T) {
			for _, msg := range []string{"message received", "sealed", "delivered", "finished"} {
				n := 0
				for _, l := range lines {
					if l["msg"] == msg {
						n++
						if l["id"] == nil && l["msg_id"] == nil {
							t.Errorf("%q line without a message id: %v", msg, l)
						}
					}
				}
				if n == 0 {
					t.Errorf("no %q line", msg)
				}
			}
		}},
		{"ok no content and no PIN", func(t *testing.T) {
			pin, err := os.ReadFile(env.PINFile)
			if err != nil {
				t.Fatal(err)
			}
			for _, secret := range []string{secretSubject, "xk9", strings.TrimSpace(string(pin)) + `"`} {
				if strings.Contains(d.Log(), secret) {
					t.Errorf("the log contains %q", secret)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}
