package main

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"appliance/config"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

// TestKeysDKIMRecord: `appliance keys dkim-record` prints the record of the key on the token,
// and a package signed through the configuration's [[dkim]] keys verifies with python3-dkim
// against that very record.
func TestKeysDKIMRecord(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfgPath, _ := certsConfig(t, env, "[[dkim]]\ndomain = \"example.test\"\nselector = \"s1\"\nkey = \"pkcs11:token=appliance;object=alice\"\n")
	out, _, err := runKeysCmd(cfgPath, "dkim-record", "-domain", "EXAMPLE.test")
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(env.Cert(t, "alice").PublicKey)
	var value strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(out, -1) {
		value.WriteString(m[1])
	}
	if !strings.HasPrefix(out, "s1._domainkey.example.test. IN TXT (") || value.String() != "v=DKIM1; k=rsa; p="+base64.StdEncoding.EncodeToString(spki) {
		t.Fatalf("record:\n%s", out)
	}
	if _, _, err := runKeysCmd(cfgPath, "dkim-record", "-domain", "example.org"); err == nil || !strings.Contains(err.Error(), "no [[dkim]] entry") {
		t.Fatalf("unknown domain: %v", err)
	}

	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := openTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	s, err := newDKIMSigner(bgctx(), cfg, sup)
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: alice@example.test\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nhello\r\n"
	field, err := s.Sign(strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim").Run(); err != nil {
		ci.Skipf(t, "python3-dkim missing (scripts/deps.sh): %v", err)
	}
	dns, _ := json.Marshal(map[string]string{"s1._domainkey.example.test.": value.String()})
	dnsFile := filepath.Join(t.TempDir(), "dns.json")
	if err := os.WriteFile(dnsFile, dns, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "dkim", "testdata", "dkimverify.py"), dnsFile)
	cmd.Stdin = strings.NewReader(field + msg)
	if res, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(res), "ok example.test s1 rsa-sha256") {
		t.Fatalf("python3-dkim: %v\n%s", err, res)
	}
}
