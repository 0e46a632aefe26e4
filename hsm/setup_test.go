package hsm_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

func TestKeyLabel(t *testing.T) {
	used := map[string]bool{}
	for _, tt := range []struct{ addr, want string }{
		{"Alice@Example.org", "alice"},
		{"alice@other.example", "alice-other.example"},
		{"b+c d@example.org", "b-c-d"},
	} {
		if got := hsm.KeyLabel(tt.addr, used); got != tt.want {
			t.Errorf("KeyLabel(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestParseRoles(t *testing.T) {
	r, err := hsm.ParseRoles([]string{"sign", "content"})
	if err != nil || r != hsm.RoleSign|hsm.RoleContent {
		t.Fatalf("ParseRoles = %v, %v", r, err)
	}
	if _, err := hsm.ParseRoles([]string{"sign", "decrypt"}); err == nil {
		t.Fatal("ParseRoles accepted an unknown role")
	}
}

func TestLoadOrMakePIN(t *testing.T) {
	file := filepath.Join(t.TempDir(), "new", "pin")
	pin, made, err := hsm.LoadOrMakePIN(file)
	if err != nil || !made || len(pin) != 16 {
		t.Fatalf("LoadOrMakePIN (no file) = %q, %v, %v; want a new 16-digit PIN", pin, made, err)
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("PIN file: %v, %v; want mode 0600", st, err)
	}
	again, made, err := hsm.LoadOrMakePIN(file)
	if err != nil || made || again != pin {
		t.Fatalf("LoadOrMakePIN (file) = %q, %v, %v; want %q read back", again, made, err, pin)
	}
}

// TestEnsureKeyAndRequest: a key is made once and found after; the request is signed by it on
// the token and names the address.
func TestEnsureKeyAndRequest(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	label := unique("ensure")
	uri := "pkcs11:token=" + softhsmtest.TokenLabel + ";object=" + label
	s, made, err := tok.EnsureKey(ctx, uri, label, quickKind(env))
	if err != nil || !made {
		t.Fatalf("EnsureKey (new) = %v, %v", made, err)
	}
	s2, made, err := tok.EnsureKey(ctx, uri, label, quickKind(env))
	if err != nil || made {
		t.Fatalf("EnsureKey (existing) = %v, %v", made, err)
	}
	if !s2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(s.Public()) {
		t.Fatal("EnsureKey found another key than the one it made")
	}
	csr, err := hsm.CertificateRequest(s, "Alice", "alice@example.org")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(csr)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM request:\n%s", csr)
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || req.CheckSignature() != nil {
		t.Fatalf("request: %v", err)
	}
	if req.Subject.CommonName != "Alice" || len(req.EmailAddresses) != 1 || req.EmailAddresses[0] != "alice@example.org" {
		t.Fatalf("request names %q %v", req.Subject.CommonName, req.EmailAddresses)
	}
}

func TestMechanismReport(t *testing.T) {
	tok, _ := open(t, nil)
	lines, err := hsm.MechanismReport(tok, "main", []string{"sign"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(lines[0], `token "main" (label "`+softhsmtest.TokenLabel+`"`) {
		t.Errorf("first line %q", lines[0])
	}
	if last := lines[len(lines)-1]; last != "roles sign: ok" {
		t.Errorf("last line %q, want roles sign: ok", last)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "(role sign") {
		t.Errorf("no mechanism marked for the sign role:\n%s", strings.Join(lines, "\n"))
	}
}

// TestInitTokenFresh initialises a token on a module without one and finds it described and
// usable with the PIN it set. SoftHSM2 reads its configuration once per process, so the empty
// module is used from a child process running TestInitTokenChild.
func TestInitTokenFresh(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t) // it makes a SoftHSM2 module with no token
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := "directories.tokendir = " + filepath.Join(dir, "tokens") + "\nobjectstore.backend = file\nlog.level = ERROR\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestInitTokenChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf, "APPLIANCE_INIT_CHILD="+env.Module)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestInitTokenChild") {
		t.Fatalf("init child: %v\n%s", err, out)
	}
}

func TestInitTokenChild(t *testing.T) {
	module := os.Getenv("APPLIANCE_INIT_CHILD")
	if module == "" {
		t.Skip("run by TestInitTokenFresh") // a child process: the parent runs it
	}
	if labels, err := hsm.ListTokens(module); err != nil || len(labels) != 0 {
		t.Fatalf("ListTokens before = %v, %v; want none", labels, err)
	}
	if err := hsm.InitToken(module, "fresh", softhsmtest.SOPIN, softhsmtest.PIN); err != nil {
		t.Fatalf("InitToken: %v", err)
	}
	if labels, err := hsm.ListTokens(module); err != nil || len(labels) != 1 || labels[0] != "fresh" {
		t.Fatalf("ListTokens after = %v, %v; want fresh", labels, err)
	}
	lines, err := hsm.ModuleInfo(module, "fresh")
	if err != nil || len(lines) != 3 || !strings.HasPrefix(lines[2], `token     "fresh": SoftHSM`) {
		t.Fatalf("ModuleInfo = %q, %v", lines, err)
	}
	if _, err := hsm.ModuleInfo(module, "nosuch"); err == nil || !strings.Contains(err.Error(), "no token with this label") {
		t.Fatalf("ModuleInfo of a missing token = %v", err)
	}
	tok, err := hsm.Open(hsm.Config{Module: module, TokenLabel: "fresh", PIN: softhsmtest.PIN, MaxSessions: 1})
	if err != nil {
		t.Fatalf("Open with the PIN InitToken set: %v", err)
	}
	tok.Close()
}
