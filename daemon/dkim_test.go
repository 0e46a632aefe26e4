package daemon

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/config"
	"appliance/dkim"
	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

func generateEd25519(t *testing.T, env *softhsmtest.Env, label string) {
	softhsmtest.GenerateEd25519(t, env, label)
}

// A [[dkim]] entry naming an Ed25519 key on the token gives ed25519-sha256 signatures (RFC 8463)
// that dkimpy verifies against the record `keys dkim-record` would print, beside an RSA entry of
// the same domain; a changed body fails.
func TestDKIMSignerEd25519(t *testing.T) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		ci.Skipf(t, "python3 missing: install python3-dkim (scripts/deps.sh)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		ci.Skipf(t, "python3-dkim or python3-nacl missing (scripts/deps.sh): %v", err)
	}
	env := softhsmtest.Setup(t)
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	// After Open: crypto11 refuses a module someone else initialised first.
	generateEd25519(t, env, "dkim-ed")
	cfg := &config.Config{DKIM: []config.DKIM{
		{Domain: "example.test", Selector: "ed1", Key: "pkcs11:token=appliance;object=dkim-ed"},
		{Domain: "example.test", Selector: "rsa1", Key: "pkcs11:token=appliance;object=alice"},
	}}
	ctx := context.Background()
	s, err := NewDKIMSigner(ctx, cfg, tok)
	if err != nil {
		t.Fatalf("NewDKIMSigner: %v", err)
	}
	recs := map[string]string{}
	for _, e := range cfg.DKIM {
		k, err := tok.Signer(ctx, e.Key)
		if err != nil {
			t.Fatal(err)
		}
		r, err := dkim.Record(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		recs[dkim.RecordName(e.Selector, e.Domain)] = r
	}
	if !strings.HasPrefix(recs[dkim.RecordName("ed1", "example.test")], "v=DKIM1; k=ed25519; p=") {
		t.Fatalf("Ed25519 key's record: %q", recs[dkim.RecordName("ed1", "example.test")])
	}
	b, _ := json.Marshal(recs)
	dns := filepath.Join(t.TempDir(), "dns.json")
	if err := os.WriteFile(dns, b, 0o600); err != nil {
		t.Fatal(err)
	}
	const msg = "From: Alice <alice@example.test>\r\n" +
		"To: bob@example.org\r\n" +
		"Subject: figures\r\n" +
		"Date: Thu, 3 Dec 2026 07:00:00 +0000\r\n" +
		"Message-ID: <1@example.test>\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"\r\n" +
		"MIAGCSqGSIb3DQEHA6CAMIACAQAxggEw\r\n"
	field, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	verify := func(m string) (string, bool) {
		cmd := exec.Command("/usr/bin/python3", filepath.Join(softhsmtest.RepoRoot(), "dkim", "testdata", "dkimverify.py"), dns)
		cmd.Stdin = strings.NewReader(m)
		out, err := cmd.CombinedOutput()
		if _, exit := err.(*exec.ExitError); err != nil && !exit {
			t.Fatal(err)
		}
		return string(out), err == nil
	}
	signed := field + msg
	out, ok := verify(signed)
	if !ok || !strings.Contains(out, "ok example.test ed1 ed25519-sha256") || !strings.Contains(out, "ok example.test rsa1 rsa-sha256") {
		t.Fatalf("dkimpy:\n%s\nmessage:\n%s", out, signed)
	}
	if out, ok := verify(strings.Replace(signed, "MIAGCSqG", "MIAGCSqH", 1)); ok {
		t.Fatalf("dkimpy accepts a changed body:\n%s", out)
	}
}
