package hsm_test

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

// A signature is one C_Sign and a wrap one C_WrapKey (the patch in third_party/pkcs11): no length
// query first, which costs a remote module (p11-kit) a round trip and SoftHSM2 a second wrap.
// The calls are counted by pkcs11-spy between the token layer and SoftHSM2, in a child process
// (TestCallsChild): the spy's C_Finalize would finalize the SoftHSM2 the other tests use.
func TestCalls(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t)
	spy := softhsmtest.SpyModule(t)
	// Open probes the token (OAEP hashes by wrapping), so the calls of an Open alone are counted
	// too, in a second child, and taken off.
	count := func(ops string) map[string]int {
		log := filepath.Join(t.TempDir(), "spy.log")
		cmd := exec.Command(os.Args[0], "-test.run=^TestCallsChild$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "APPLIANCE_CALLS_CHILD="+spy, "APPLIANCE_CALLS_OPS="+ops,
			"PKCS11SPY="+env.Module, "PKCS11SPY_OUTPUT="+log)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestCallsChild") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		b, err := os.ReadFile(log)
		if err != nil {
			t.Fatal(err)
		}
		calls := map[string]int{}
		for _, m := range regexp.MustCompile(`(?m)^\d+: (C_\w+)`).FindAllStringSubmatch(string(b), -1) {
			calls[m[1]]++
		}
		return calls
	}
	opened, ops := count("0"), count("1")
	if opened["C_Initialize"] == 0 {
		t.Fatalf("the spy logged no C_Initialize: %v", opened)
	}
	// The child signs twice (RSA PKCS#1 v1.5 through the key's handle, RSA-PSS through crypto11)
	// and wraps twice (PKCS#1 v1.5, OAEP).
	sign, wrap := ops["C_Sign"]-opened["C_Sign"], ops["C_WrapKey"]-opened["C_WrapKey"]
	if sign != 2 || wrap != 2 {
		t.Errorf("C_Sign %d times, C_WrapKey %d times; want 2 and 2 (one each per signature and wrap)\nopen alone: %v\nwith the operations: %v", sign, wrap, opened, ops)
	}
}

func TestCallsChild(t *testing.T) {
	spy := os.Getenv("APPLIANCE_CALLS_CHILD")
	if spy == "" {
		t.Skip("run by TestCalls")
	}
	env := softhsmtest.Setup(t)
	cfg := config(env)
	cfg.Module = spy
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	if os.Getenv("APPLIANCE_CALLS_OPS") != "1" {
		return
	}
	ctx := context.Background()
	s, err := tok.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("one call"))
	pub := s.Public().(*rsa.PublicKey)
	sig, err := s.Sign(nil, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Errorf("PKCS#1 v1.5 signature: %v", err)
	}
	pss := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
	if sig, err = s.Sign(nil, digest[:], pss); err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, pss); err != nil {
		t.Errorf("PSS signature: %v", err)
	}
	k, err := tok.GenerateCEK(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy(ctx)
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	for _, h := range []crypto.Hash{0, tok.OAEPHash()} {
		w, err := k.WrapRSA(ctx, bob, h)
		if err != nil {
			t.Fatal(err)
		}
		if len(w) != bob.Size() {
			t.Errorf("wrapped key of %d bytes, want %d", len(w), bob.Size())
		}
	}
}
