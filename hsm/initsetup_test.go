package hsm_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

// TestSetupSenderKey: a sender's key is made once under its address's label and found after;
// the request is signed by it and names the address.
func TestSetupSenderKey(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	addr := unique("setup") + "@example.org"
	k, err := tok.SetupSenderKey(ctx, softhsmtest.TokenLabel, addr, map[string]bool{}, quickKind(env))
	if err != nil || !k.Made {
		t.Fatalf("SetupSenderKey (new) = %+v, %v", k, err)
	}
	if want := "pkcs11:token=" + softhsmtest.TokenLabel + ";object=" + k.Label; k.URI != want || !strings.HasPrefix(addr, k.Label) {
		t.Errorf("URI %q label %q, want %q", k.URI, k.Label, want)
	}
	again, err := tok.SetupSenderKey(ctx, softhsmtest.TokenLabel, addr, map[string]bool{}, quickKind(env))
	if err != nil || again.Made || again.URI != k.URI {
		t.Fatalf("SetupSenderKey (existing) = %+v, %v", again, err)
	}
	b, _ := pem.Decode(again.CSR)
	if b == nil {
		t.Fatalf("not PEM:\n%s", again.CSR)
	}
	req, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || req.CheckSignature() != nil || len(req.EmailAddresses) != 1 || req.EmailAddresses[0] != addr {
		t.Fatalf("request %v: %v", req, err)
	}
	s, err := tok.Signer(ctx, k.URI)
	if err != nil || !s.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(req.PublicKey) {
		t.Fatalf("the request is not for the key on the token: %v", err)
	}
}

// TestInitTokenFromFilesPINs: without its SO PIN nothing is written; a user PIN file that cannot
// be made is reported as such. (Initialising a token: TestInitTokenFresh, and init's tests.)
func TestInitTokenFromFilesPINs(t *testing.T) {
	env := softhsmtest.Setup(t)
	dir := t.TempDir()
	pinFile := filepath.Join(dir, "pin")
	made, err := hsm.InitTokenFromFiles(env.Module, "x", filepath.Join(dir, "none"), pinFile)
	if err == nil || made || !strings.HasPrefix(err.Error(), "SO PIN: ") {
		t.Fatalf("without an SO PIN file: %v, %v", made, err)
	}
	if _, err := os.Stat(pinFile); err == nil {
		t.Error("a user PIN was written although the SO PIN could not be read")
	}
	so := filepath.Join(dir, "so")
	if err := os.WriteFile(so, []byte(softhsmtest.SOPIN), 0o600); err != nil {
		t.Fatal(err)
	}
	blocked := filepath.Join(so, "pin") // under a file: cannot be made
	if made, err := hsm.InitTokenFromFiles(env.Module, "x", so, blocked); err == nil || made || !strings.HasPrefix(err.Error(), "user PIN: ") {
		t.Fatalf("user PIN file under a file: %v, %v", made, err)
	}
}

func TestDescribeToken(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t) // it names SoftHSM2's library and token
	lib, tok, err := hsm.DescribeToken(env.Module, "pkcs11:token="+softhsmtest.TokenLabel)
	if err != nil || !strings.Contains(lib, "SoftHSM") || !strings.HasPrefix(tok, `"`+softhsmtest.TokenLabel+`": SoftHSM`) {
		t.Fatalf("DescribeToken = %q, %q, %v", lib, tok, err)
	}
	if lib, tok, err := hsm.DescribeToken(env.Module, "pkcs11:serial=0"); err != nil || lib == "" || tok != "" {
		t.Errorf("selected by serial: %q, %q, %v; want the library only", lib, tok, err)
	}
	if _, _, err := hsm.DescribeToken(env.Module, "pkcs11:token=nosuch"); err == nil {
		t.Error("a missing token was described")
	}
}
