package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestKeysGenerateEd25519: `keys generate -type ed25519` makes an Ed25519 key on the token, and
// `keys dkim-record` then prints its RFC 8463 record (k=ed25519, p= the 32-byte point), the key
// the token signs with.
func TestKeysGenerateEd25519(t *testing.T) {
	env := softhsmtest.Setup(t)
	label := fmt.Sprintf("dkim-ed-%d", time.Now().UnixNano())
	cfgPath, _ := certsConfig(t, env, "[[dkim]]\ndomain = \"example.test\"\nselector = \"ed\"\nkey = \"pkcs11:token=appliance;object="+label+"\"\n")
	out, _, err := runKeysCmd(cfgPath, "generate", "-label", label, "-type", "ed25519")
	if err != nil {
		t.Fatalf("keys generate -type ed25519: %v", err)
	}
	if !strings.Contains(out, "generated ed25519 key pkcs11:") || !strings.Contains(out, label) {
		t.Errorf("keys generate said %q", out)
	}
	out, _, err = runKeysCmd(cfgPath, "dkim-record", "-domain", "example.test")
	if err != nil {
		t.Fatal(err)
	}
	var value strings.Builder
	for _, m := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(out, -1) {
		value.WriteString(m[1])
	}
	rec, ok := strings.CutPrefix(value.String(), "v=DKIM1; k=ed25519; p=")
	if !strings.HasPrefix(out, "ed._domainkey.example.test. IN TXT (") || !ok {
		t.Fatalf("record:\n%s", out)
	}
	pub, err := base64.StdEncoding.DecodeString(rec)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("p= %q: not an Ed25519 point (%v)", rec, err)
	}
	// The record is the key the token signs with.
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := daemon.OpenTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	s, err := sup.Signer(bgctx(), "pkcs11:token=appliance;object="+label)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("signed on the token")
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
		t.Fatalf("the token's signature does not verify with the record's key: %v", err)
	}
	if _, stderr, err := runKeysCmd(cfgPath, "generate", "-label", "x", "-type", "ed448"); !errors.Is(err, errUsage) || !strings.Contains(stderr, "ed25519") {
		t.Errorf("-type ed448: %v %q, want a usage error listing ed25519", err, stderr)
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
