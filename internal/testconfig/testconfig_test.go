package testconfig

import (
	"testing"

	"appliance/config"
	"appliance/internal/softhsmtest"
)

// TestTOML: the standard configuration, and one with two [[token]] entries instead of a token in
// [hsm], are valid configurations that say what the fields say.
func TestTOML(t *testing.T) {
	env := &softhsmtest.Env{Module: "/usr/lib/softhsm/libsofthsm2.so", PINFile: "/tmp/pin", PKI: "/tmp/pki"}
	c := New(env, "/tmp/x")
	cfg, err := config.Parse([]byte(c.TOML()))
	if err != nil {
		t.Fatalf("standard:\n%s\n%v", c.TOML(), err)
	}
	if cfg.HSM.Module != env.Module || cfg.Spool.Dir != "/tmp/x/spool" || len(cfg.Senders) != 1 || cfg.Senders[0].Address != "alice@example.test" {
		t.Fatalf("standard parsed back: %+v", cfg)
	}
	c.Module, c.Token, c.PINFile = "", "", ""
	c.HSM = []string{`content_token = "hsm"`}
	c.Tokens = []Token{{Name: "hsm", Module: env.Module, URI: "pkcs11:token=appliance", PINFile: env.PINFile, Roles: []string{"sign", "content"}},
		{Name: "card", Module: env.Module, URI: "pkcs11:token=card", PINFile: env.PINFile, Roles: []string{"sign"}, MaxSessions: 2}}
	cfg, err = config.Parse([]byte(c.TOML()))
	if err != nil {
		t.Fatalf("tokens:\n%s\n%v", c.TOML(), err)
	}
	if ts := cfg.TokenList(); len(ts) != 2 || ts[1].Name != "card" || ts[1].MaxSessions != 2 {
		t.Fatalf("tokens parsed back: %+v", ts)
	}
}
