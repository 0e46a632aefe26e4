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
	importKey(t, env, conf, "card", "carol", "03")
	card := own.Serve(t, conf, "card")
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	d := startTokenDaemon(t, own, s, card.Module, "card", card.Address)

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

// startTokenDaemon runs the daemon with two [[token]] entries: own's token ("hsm", every role,
// alice's key) and the remote token labelled remoteLabel behind p11-kit-client.so at address
// ("card", role sign, carol's key), delivering to s.
// tokenTables replaces the single [hsm] token of the configuration file at path by the
// [[token]] tables given.
func tokenTables(t *testing.T, path, tables string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^\s*(module|token|pin_file) = .*\n`).ReplaceAllString(string(b), "") + tables
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func startTokenDaemon(t *testing.T, own *softhsmtest.Env, s *sink.Sink, clientModule, remoteLabel, address string) *Daemon {
	t.Helper()
	cfg := NewConfig(t, own, s.Addr())
	cfg.Sender = append(cfg.Sender, SenderConfig{Address: carol, Key: "pkcs11:token=" + remoteLabel + ";object=carol", Cert: own.File("carol.chain.pem")})
	path, err := cfg.WriteWith(t.TempDir(), `reconnect_max = "500ms"`)
	if err != nil {
		t.Fatal(err)
	}
	tokenTables(t, path, fmt.Sprintf(`
[[token]]
name = "hsm"
module = %q
uri = "pkcs11:token=appliance"
pin_file = %q
roles = ["sign", "content"]

[[token]]
name = "card"
module = %q
uri = "pkcs11:token=%s"
pin_file = %q
roles = ["sign"]
max_sessions = 2
`, own.Module, own.PINFile, clientModule, remoteLabel, own.PINFile))
	d := &Daemon{Bin: Build(t), ConfigPath: path, Addr: cfg.SMTP.Listen,
		Env: []string{"SOFTHSM2_CONF=" + own.Conf, "P11_KIT_SERVER_ADDRESS=" + address}}
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
	return d
}

// importKey loads the PKI's NAME.key onto the SoftHSM2 token label of the configuration conf.
func importKey(t *testing.T, env *softhsmtest.Env, conf, label, name, id string) {
	t.Helper()
	imp := exec.Command("softhsm2-util", "--import", env.File(name+".key"), "--token", label, "--label", name, "--id", id, "--pin", softhsmtest.PIN)
	imp.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import %s's key on %s: %v\n%s", name, label, err, out)
	}
}

// TestTokensRemoteShared runs two daemons, each with its own local token, signing for one sender
// on one remote token behind p11-kit server, with 5 ms added to every request on the link: both
// deliver every message, signed on the shared remote token.
func TestTokensRemoteShared(t *testing.T) {
	env := softhsmtest.Setup(t)
	Build(t)
	first := OwnToken(t, env)
	conf := first.Card(t, "remote", "")
	importKey(t, env, conf, "remote", "carol", "03")
	remote := first.Serve(t, conf, "remote")
	link := remote.Link(t)
	link.SetDelay(5 * time.Millisecond)
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ids := map[string][]string{}
	for i, own := range []*softhsmtest.Env{first, OwnToken(t, env)} {
		d := startTokenDaemon(t, own, s, remote.Module, "remote", link.Address)
		for n := 0; n < 3; n++ {
			raw := Message{From: carol, To: []string{bob}, Subject: fmt.Sprintf("instance %d message %d", i, n), Text: "x\n"}.Bytes()
			res, err := SubmitGo(d.Addr, carol, []string{bob}, raw)
			if err != nil || res.Mail != nil || res.Data != nil {
				t.Fatalf("submission to instance %d: %v, %+v", i, err, res)
			}
			ids[messageID(raw)] = []string{bob}
		}
	}
	waitDelivered(t, s, ids, 60*time.Second)
}
