package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/audit"
	"appliance/config"
	"appliance/daemon"
	"appliance/internal/softhsmtest"
)

// TestAuditCommand: `appliance audit verify` passes an untouched trail (exit 0), names the
// changed record (exit 1), and `audit show -json` prints one record a line.
func TestAuditCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.Open(audit.Options{Dir: dir, Signer: key, MaxBytes: 600})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if err := l.Accepted(audit.Accepted{Message: id, From: "alice@example.com", Recipients: []string{"bob@example.org"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	if len(files) < 2 {
		t.Fatalf("files %v", files)
	}
	spki, _ := x509.MarshalPKIXPublicKey(key.Public())
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, nil, "", nil, append([]string{"audit", "verify", "-key", keyFile}, files...)...)
	if r.code != 0 || !strings.Contains(r.stdout, "\nok\n") {
		t.Fatal(r)
	}
	r = runBin(t, nil, "", nil, append([]string{"audit", "show", "-json"}, files...)...)
	if r.code != 0 || strings.Count(r.stdout, "\n") != 4+2*len(files) {
		t.Fatal(r)
	}
	b, _ := os.ReadFile(files[0])
	if err := os.WriteFile(files[0], []byte(strings.Replace(string(b), `"message":"a"`, `"message":"z"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runBin(t, nil, "", nil, append([]string{"audit", "verify"}, files...)...)
	if r.code != 1 || !strings.Contains(r.stderr, files[0]+":2: changed: seq 2 was changed") {
		t.Fatal(r)
	}
	r = runBin(t, nil, "", nil, "audit", "verify")
	if r.code != 2 || !strings.Contains(r.stderr, "at least one FILE") {
		t.Fatal(r)
	}
}

// TestOpenAuditLog: [audit] with a key on the token gives a trail whose seals verify against
// that key's certificate.
func TestOpenAuditLog(t *testing.T) {
	env := softhsmtest.Setup(t)
	dir := filepath.Join(t.TempDir(), "audit")
	cfgPath, _ := certsConfig(t, env, fmt.Sprintf("[audit]\ndir = %q\nkey = \"pkcs11:token=appliance;object=alice\"\n", dir))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	sup, err := daemon.OpenTokens(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer sup.Close()
	l, err := daemon.OpenAuditLog(bgctx(), cfg, sup)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Accepted(audit.Accepted{Message: "m1", From: "alice@example.test", Recipients: []string{"bob@example.org"}}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := audit.Verify([]string{filepath.Join(dir, audit.FileName(1))}, audit.VerifyOptions{Trusted: []crypto.PublicKey{env.Cert(t, "alice").PublicKey}})
	if err != nil || rep.Problem != nil || rep.Signed != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
}
