package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// TestTokensOpencryptoki runs the daemon with alice's signing key on a second PKCS#11
// implementation, opencryptoki's software token (softhsm-test/ocktoken.sh; needs root), as a
// [[token]] with role sign beside a SoftHSM2 token doing the content keys. opencryptoki 3.8.1 has
// no AES-GCM, so the appliance refuses it for content (hsm.TestSecondImplementation); for signing
// it is a token like any other. Alice's key is deleted from the SoftHSM2 token first, so a package
// that verifies as hers was signed by opencryptoki.
func TestTokensOpencryptoki(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t) // the content token; opencryptoki is the signing one either way
	Build(t)
	ock := softhsmtest.Opencryptoki(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	own := OwnToken(t, env)
	for _, typ := range []string{"privkey", "pubkey"} {
		del := exec.Command("pkcs11-tool", "--module", own.Module, "--token-label", softhsmtest.TokenLabel,
			"--login", "--pin", softhsmtest.PIN, "--delete-object", "--type", typ, "--label", "alice")
		del.Env = append(os.Environ(), "SOFTHSM2_CONF="+own.Conf)
		if out, err := del.CombinedOutput(); err != nil {
			t.Fatalf("delete alice's %s from the SoftHSM2 token: %v\n%s", typ, err, out)
		}
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	cfg := NewConfig(t, own, s.Addr())
	cfg.Sender[0].Key = "pkcs11:manufacturer=IBM%20Corp.;object=alice"
	path, err := cfg.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tokenTables(t, path, fmt.Sprintf(`
[[token]]
name = "hsm"
module = %q
uri = "pkcs11:token=appliance;manufacturer=SoftHSM%%20project"
pin_file = %q
roles = ["sign", "content"]

[[token]]
name = "ock"
module = %q
uri = "pkcs11:token=appliance;manufacturer=IBM%%20Corp."
pin_file = %q
roles = ["sign"]
`, own.Module, own.PINFile, ock.Module, ock.PINFile))
	d := &Daemon{Bin: Build(t), ConfigPath: path, Addr: cfg.SMTP.Listen, Env: []string{"SOFTHSM2_CONF=" + own.Conf}}
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

	msg := Message{From: Sender, To: []string{bob, carol}, Subject: "signed on opencryptoki", Text: "second implementation\n"}
	raw := msg.Bytes()
	res, err := SubmitGo(d.Addr, Sender, msg.To, raw)
	if err != nil || res.Mail != nil || res.Data != nil {
		t.Fatalf("submission: %v, %+v", err, res)
	}
	txs, err := WaitPackages(s, 1, 60*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	checker := &Checker{PKI: pki, Tmp: t.TempDir()}
	pkgs, err := checker.Check(context.Background(), Expect{From: Sender, To: msg.To, Rcpt: res.Accepted(msg.To), Message: raw}, txs)
	if err != nil {
		t.Fatalf("check failed:\n%v", err)
	}
	if k := kinds(pkgs); k[Encrypted] != 1 {
		t.Fatalf("packages %v, want 1 encrypted", k)
	}
}
