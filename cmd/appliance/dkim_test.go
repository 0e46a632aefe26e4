package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"appliance/compliance"
	"appliance/config"
	"appliance/daemon"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
	"appliance/queue"
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
	sup, err := daemon.OpenTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	s, err := daemon.NewDKIMSigner(bgctx(), cfg, sup)
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
	verify := func(m string) (string, bool) {
		cmd := exec.Command("/usr/bin/python3", filepath.Join("..", "..", "dkim", "testdata", "dkimverify.py"), dnsFile)
		cmd.Stdin = strings.NewReader(m)
		res, err := cmd.CombinedOutput()
		return string(res), err == nil && strings.Contains(string(res), "ok example.test s1 rsa-sha256")
	}
	if res, ok := verify(field + msg); !ok {
		t.Fatalf("python3-dkim:\n%s", res)
	}

	// The compliance processor with DKIM alone: the package from a domain with a key is signed, the other is not.
	other := strings.Replace(msg, "alice@example.test", "alice@example.org", 1)
	p := compliance.New(compliance.Options{DKIM: s}).Processor(fixedProcessor{msg, other})
	sealed, err := p.Process(bgctx(), "id1", queue.Envelope{}, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	var b0, b1 strings.Builder
	sealed.Packages[0].Body.WriteTo(&b0)
	sealed.Packages[1].Body.WriteTo(&b1)
	if res, ok := verify(b0.String()); !ok || !strings.HasSuffix(b0.String(), msg) {
		t.Fatalf("processor's package:\n%s\n%s", b0.String(), res)
	}
	if b1.String() != other {
		t.Fatalf("package without a key changed:\n%s", b1.String())
	}
}

// fixedProcessor seals every message into the packages it holds, one a string.
type fixedProcessor []string

func (f fixedProcessor) Process(context.Context, string, queue.Envelope, io.Reader) (*queue.Sealed, error) {
	s := &queue.Sealed{}
	for _, p := range f {
		s.Packages = append(s.Packages, queue.Package{Body: textPackage(p)})
	}
	return s, nil
}

// textPackage writes the same bytes on every WriteTo, as a sealed package does.
type textPackage string

func (p textPackage) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, string(p))
	return int64(n), err
}
