package softhsmtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"appliance/internal/ci"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

func TestSetup(t *testing.T) {
	e := Setup(t)
	if got := e.Cert(t, "bob").EmailAddresses; len(got) != 1 || got[0] != "bob@example.test" {
		t.Fatalf("bob's certificate names %v", got)
	}
	if e.Users(t)["heidi-b"] != "heidi@example.test" {
		t.Fatal("users.tsv lacks heidi-b")
	}
	out, err := exec.Command("pkcs11-tool", "--module", e.Module, "--token-label", TokenLabel,
		"--login", "--pin", PIN, "--list-objects").CombinedOutput()
	if err != nil {
		ci.Skipf(t, "pkcs11-tool: %v", err)
	}
	for _, label := range []string{"alice", "list"} {
		if !strings.Contains(string(out), "label:      "+label) {
			t.Fatalf("token lacks %q:\n%s", label, out)
		}
	}
}
