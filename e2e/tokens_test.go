package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// TestTokensCardOut runs the daemon with two [[token]] entries: the HSM (every role, alice's key)
// and a sign-only card served by p11-kit server in its own process (carol's key). With the card
// out, carol's mail is accepted and waits while alice's is delivered; with the card back, carol's
// is delivered too, without a restart, each message once.
func TestTokensCardOut(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	own := OwnToken(t, env)
	conf := own.Card(t, "card", "CKM_RSA_PKCS,CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS")
	imp := exec.Command("softhsm2-util", "--import", env.File("carol.key"), "--token", "card", "--label", "carol", "--id", "03", "--pin", softhsmtest.PIN)
	imp.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import carol's key on the card: %v\n%s", err, out)
	}
	card := own.Serve(t, conf, "card")
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	cfg := NewConfig(t, own, s.Addr())
	cfg.Sender = append(cfg.Sender, SenderConfig{Address: carol, Key: "pkcs11:token=card;object=carol", Cert: env.File("carol.chain.pem")})
	path, err := cfg.WriteWith(t.TempDir(), `reconnect_max = "500ms"`)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^\s*(module|token|pin_file) = .*\n`).ReplaceAllString(string(b), "")
	text += fmt.Sprintf(`
[[token]]
name = "hsm"
module = %q
uri = "pkcs11:token=appliance"
pin_file = %q
roles = ["sign", "content"]

[[token]]
name = "card"
module = %q
uri = "pkcs11:token=card"
pin_file = %q
roles = ["sign"]
max_sessions = 2
`, own.Module, own.PINFile, card.Module, own.PINFile)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Bin: Build(t), ConfigPath: path, Addr: cfg.SMTP.Listen,
		Env: []string{"SOFTHSM2_CONF=" + own.Conf, "P11_KIT_SERVER_ADDRESS=" + card.Address}}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("appliance serve log:\n%s", tail(d.Log(), 80))
		}
	})
	if err := d.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	send := func(from, subject string, ids map[string][]string) {
		t.Helper()
		raw := Message{From: from, To: []string{bob}, Subject: subject, Text: "x\n"}.Bytes()
		res, err := SubmitGo(d.Addr, from, []string{bob}, raw)
		if err != nil || res.Mail != nil || res.Data != nil {
			t.Fatalf("submission from %s: %v, %+v", from, err, res)
		}
		ids[messageID(raw)] = []string{bob}
	}
	first := map[string][]string{}
	send(Sender, "alice, card in", first)
	send(carol, "carol, card in", first)
	waitDelivered(t, s, first, 20*time.Second)

	card.Stop()
	fromAlice, fromCarol := map[string][]string{}, map[string][]string{}
	send(carol, "carol, card out", fromCarol)
	send(Sender, "alice, card out", fromAlice)
	waitDelivered(t, s, fromAlice, 20*time.Second)
	if err := d.WaitLog(`"msg":"hsm down"`, 1, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Log(), `"token":"card"`) {
		t.Errorf("the log does not name the card")
	}
	tl := newTally(s)
	tl.update()
	for id := range fromCarol {
		if tl.count[[2]string{id, bob}] != 0 {
			t.Fatalf("carol's message was delivered while her card was out")
		}
	}

	card.Start(t)
	waitDelivered(t, s, fromCarol, 30*time.Second)
}
