package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHSMHealth(t *testing.T) {
	hsmKeys := func(lines string) func(string) string {
		return repl("max_sessions = 8\n", "max_sessions = 8\n"+lines+"\n")
	}
	tests := []struct {
		name      string
		edit      func(string) string
		requireUp bool
		wait      time.Duration
		wantErr   error
		wantKey   string
	}{
		{name: "ok defaults", edit: func(s string) string { return s }, wait: DefaultReconnectMax},
		{name: "ok require_up and reconnect_max", edit: hsmKeys("require_up = true\nreconnect_max = \"5s\""), requireUp: true, wait: 5 * time.Second},
		{name: "fail reconnect_max too short", edit: hsmKeys(`reconnect_max = "10ms"`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail reconnect_max too long", edit: hsmKeys(`reconnect_max = "1h"`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail reconnect_max integer", edit: hsmKeys(`reconnect_max = 5`), wantErr: ErrInvalid, wantKey: "hsm.reconnect_max"},
		{name: "fail require_up not a bool", edit: hsmKeys(`require_up = "yes"`), wantErr: ErrSyntax, wantKey: "hsm.require_up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.edit(base)))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want %v", tt.wantErr)
				}
				if e := findError(err, tt.wantErr, tt.wantKey); e == nil {
					t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.HSM.RequireUp != tt.requireUp || c.HSM.ReconnectWait() != tt.wait {
				t.Errorf("require_up %v, reconnect wait %v; want %v, %v", c.HSM.RequireUp, c.HSM.ReconnectWait(), tt.requireUp, tt.wait)
			}
		})
	}
}

// twoTokens replaces [hsm]'s token with a full HSM and a sign-only card.
func twoTokens(s string) string {
	s = strings.Replace(s, `module = "/usr/lib/softhsm/libsofthsm2.so"
token = "appliance"              # token label
pin_file = "/etc/appliance/pin"
`, "", 1)
	return s + `
[[token]]
name = "hsm"
module = "/usr/lib/softhsm/libsofthsm2.so"
uri = "pkcs11:token=appliance"
pin_file = "/etc/appliance/pin"
roles = ["sign", "content"]

[[token]]
name = "card"
module = "/usr/lib/p11-kit-client.so"
uri = "pkcs11:token=card;manufacturer=SoftHSM%20project"
pin_env = "CARD_PIN"
roles = ["sign"]
max_sessions = 2
`
}

func TestTokens(t *testing.T) {
	then := func(edits ...func(string) string) func(string) string {
		return func(s string) string {
			for _, e := range edits {
				s = e(s)
			}
			return s
		}
	}
	tests := []struct {
		name    string
		edit    func(string) string
		check   func(*testing.T, *Config)
		wantErr error
		wantKey string
	}{
		{name: "ok lone hsm is one token with every role", edit: func(s string) string { return s }, check: func(t *testing.T, c *Config) {
			l := c.TokenList()
			if len(l) != 1 || l[0].Name != "appliance" || l[0].URI != "pkcs11:token=appliance" || !l[0].HasRole(RoleSign) || !l[0].HasRole(RoleContent) || l[0].MaxSessions != 8 {
				t.Errorf("TokenList = %+v", l)
			}
			if p, f := c.ContentTokens(); p != "appliance" || f != "" {
				t.Errorf("ContentTokens = %q, %q", p, f)
			}
			if n, err := c.TokenFor("pkcs11:object=x", RoleSign); n != "appliance" || err != nil {
				t.Errorf("TokenFor = %q, %v", n, err)
			}
		}},
		{name: "ok two tokens", edit: then(twoTokens, repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:token=card;object=alice"`)), check: func(t *testing.T, c *Config) {
			l := c.TokenList()
			if len(l) != 2 || l[0].MaxSessions != 8 || l[1].MaxSessions != 2 || l[1].HasRole(RoleContent) {
				t.Errorf("TokenList = %+v", l)
			}
			if p, f := c.ContentTokens(); p != "hsm" || f != "" {
				t.Errorf("ContentTokens = %q, %q", p, f)
			}
			for uri, want := range map[string]string{
				"pkcs11:token=card;object=alice":                                "card",
				"pkcs11:token=appliance;object=alice":                           "hsm",
				"pkcs11:token=card;manufacturer=SoftHSM%20project;object=alice": "card",
			} {
				if n, err := c.TokenFor(uri, RoleSign); n != want || err != nil {
					t.Errorf("TokenFor(%s) = %q, %v; want %q", uri, n, err, want)
				}
			}
		}},
		{name: "ok content token and fallback named", edit: then(twoTokens, add(`
[[token]]
name = "standby"
module = "/usr/lib/softhsm/libsofthsm2.so"
uri = "pkcs11:token=standby"
pin_file = "/etc/appliance/pin"
roles = ["content"]
`), repl("max_sessions = 8\n", "max_sessions = 8\ncontent_token = \"hsm\"\ncontent_fallback = \"standby\"\n")), check: func(t *testing.T, c *Config) {
			if p, f := c.ContentTokens(); p != "hsm" || f != "standby" {
				t.Errorf("ContentTokens = %q, %q", p, f)
			}
		}},
		{name: "ok standby holds the same keys", edit: then(twoTokens, repl(`roles = ["sign", "content"]
`, `roles = ["sign", "content"]
standby = "backup"
`), add(`
[[token]]
name = "backup"
module = "/usr/lib/softhsm/libsofthsm2.so"
uri = "pkcs11:token=backup"
pin_file = "/etc/appliance/pin"
roles = ["sign", "content"]
`)), check: func(t *testing.T, c *Config) {
			if p, f := c.ContentTokens(); p != "hsm" || f != "" {
				t.Errorf("ContentTokens = %q, %q; a standby is not a second content token", p, f)
			}
			if n, err := c.TokenFor("pkcs11:token=backup;object=alice", RoleSign); err == nil {
				t.Errorf("a key picked the standby %q directly", n)
			}
			if l := c.TokenList(); l[0].Standby != "backup" {
				t.Errorf("standby = %q", l[0].Standby)
			}
		}},
		{name: "ok the content token stands by for a card", edit: then(twoTokens, repl(`roles = ["sign"]
`, `roles = ["sign"]
standby = "hsm"
`), repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:token=card;object=alice"`)), check: func(t *testing.T, c *Config) {
			if p, _ := c.ContentTokens(); p != "hsm" {
				t.Errorf("content token %q, want the standby hsm, the only one with role content", p)
			}
			if n, err := c.TokenFor("pkcs11:object=alice", RoleSign); n != "card" || err != nil {
				t.Errorf("TokenFor = %q, %v; the standby is reached through the card", n, err)
			}
		}},
		{name: "fail standby lacks a role", edit: then(twoTokens, repl(`roles = ["sign", "content"]
`, `roles = ["sign", "content"]
standby = "card"
`)), wantErr: ErrInvalid, wantKey: "token[0].standby"},
		{name: "fail standby unknown", edit: then(twoTokens, repl(`roles = ["sign"]
`, `roles = ["sign"]
standby = "spare"
`)), wantErr: ErrInvalid, wantKey: "token[1].standby"},
		{name: "fail standby itself", edit: then(twoTokens, repl(`roles = ["sign"]
`, `roles = ["sign"]
standby = "card"
`)), wantErr: ErrInvalid, wantKey: "token[1].standby"},
		{name: "fail hsm module beside tokens", edit: then(twoTokens, repl("max_sessions = 8\n", "max_sessions = 8\nmodule = \"/x.so\"\n")), wantErr: ErrConflict, wantKey: "hsm.module"},
		{name: "fail key picks no token", edit: then(twoTokens, repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:token=other;object=alice"`)), wantErr: ErrInvalid, wantKey: "sender[0].key"},
		{name: "fail key without token attributes is ambiguous", edit: then(twoTokens, repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:object=alice"`)), wantErr: ErrInvalid, wantKey: "sender[0].key"},
		{name: "fail list on a sign-only token", edit: then(twoTokens, add(`
[[list]]
address = "team@example.test"
key = "pkcs11:token=card;object=list"
cert = "/etc/appliance/list.pem"
members_file = "/etc/appliance/team.txt"
`)), wantErr: ErrInvalid, wantKey: "list[0].key"},
		{name: "fail no content token", edit: then(twoTokens, repl(`roles = ["sign", "content"]`, `roles = ["sign"]`)), wantErr: ErrMissing, wantKey: "token"},
		{name: "fail two content tokens unnamed", edit: then(twoTokens, repl(`roles = ["sign"]`, `roles = ["sign", "content"]`)), wantErr: ErrMissing, wantKey: "hsm.content_token"},
		{name: "fail content token is sign-only", edit: then(twoTokens, repl("max_sessions = 8\n", "max_sessions = 8\ncontent_token = \"card\"\n")), wantErr: ErrInvalid, wantKey: "hsm.content_token"},
		{name: "fail fallback unknown", edit: then(twoTokens, repl("max_sessions = 8\n", "max_sessions = 8\ncontent_fallback = \"spare\"\n")), wantErr: ErrInvalid, wantKey: "hsm.content_fallback"},
		{name: "fail fallback is the content token", edit: then(twoTokens, repl("max_sessions = 8\n", "max_sessions = 8\ncontent_fallback = \"hsm\"\n")), wantErr: ErrConflict, wantKey: "hsm.content_fallback"},
		{name: "fail content_token without tokens", edit: repl("max_sessions = 8\n", "max_sessions = 8\ncontent_token = \"hsm\"\n"), wantErr: ErrConflict, wantKey: "hsm.content_token"},
		{name: "fail duplicate name", edit: then(twoTokens, repl(`name = "card"`, `name = "hsm"`)), wantErr: ErrDuplicate, wantKey: "token[1].name"},
		{name: "fail unknown role", edit: then(twoTokens, repl(`roles = ["sign"]`, `roles = ["decrypt"]`)), wantErr: ErrInvalid, wantKey: "token[1].roles"},
		{name: "fail no roles", edit: then(twoTokens, repl(`roles = ["sign"]`, `roles = []`)), wantErr: ErrMissing, wantKey: "token[1].roles"},
		{name: "fail uri names an object", edit: then(twoTokens, repl(`uri = "pkcs11:token=appliance"`, `uri = "pkcs11:token=appliance;object=alice"`)), wantErr: ErrInvalid, wantKey: "token[0].uri"},
		{name: "fail uri without label or serial", edit: then(twoTokens, repl(`uri = "pkcs11:token=card;manufacturer=SoftHSM%20project"`, `uri = "pkcs11:manufacturer=SoftHSM%20project"`)), wantErr: ErrInvalid, wantKey: "token[1].uri"},
		{name: "fail both pin sources", edit: then(twoTokens, repl(`pin_env = "CARD_PIN"`, "pin_env = \"CARD_PIN\"\npin_file = \"/p\"")), wantErr: ErrConflict, wantKey: "token[1].pin_env"},
		{name: "fail no pin", edit: then(twoTokens, repl(`pin_env = "CARD_PIN"`, "")), wantErr: ErrMissing, wantKey: "token[1].pin_file"},
		{name: "fail no module", edit: then(twoTokens, repl(`module = "/usr/lib/p11-kit-client.so"`, "")), wantErr: ErrMissing, wantKey: "token[1].module"},
		{name: "fail sessions", edit: then(twoTokens, repl(`max_sessions = 2`, `max_sessions = 1`)), wantErr: ErrInvalid, wantKey: "token[1].max_sessions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.edit(base)))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("Parse succeeded, want %v", tt.wantErr)
				}
				if e := findError(err, tt.wantErr, tt.wantKey); e == nil {
					t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.check(t, c)
		})
	}
}

// A token's PIN is read like [hsm]'s, and its errors name the token's keys.
func TestTokenPIN(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "pin")
	if err := os.WriteFile(good, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(loose, []byte("1234\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CARD_PIN", "4321")
	c := &Config{Tokens: []Token{
		{Name: "hsm", PINFile: good}, {Name: "card", PINEnv: "CARD_PIN"}, {Name: "bad", PINFile: loose},
	}}
	if pin, err := c.TokenPIN("hsm"); pin != "1234" || err != nil {
		t.Errorf("hsm PIN %q, %v", pin, err)
	}
	if pin, err := c.TokenPIN("card"); pin != "4321" || err != nil {
		t.Errorf("card PIN %q, %v", pin, err)
	}
	if _, err := c.TokenPIN("bad"); findError(err, ErrPINFileMode, "token[2].pin_file") == nil {
		t.Errorf("loose PIN file: %v", err)
	}
	if _, err := c.TokenPIN("none"); err == nil {
		t.Error("PIN of an unknown token")
	}
	if errs := c.checkTokenFiles(); len(errs) != 1 {
		t.Errorf("checkTokenFiles = %v, want the loose PIN file only", errs)
	}
}

// A failover pair on one module gets a warning (found through a symbolic link too); a pair on
// two modules, or tokens without a standby, none.
func TestTokenWarnings(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "libvendor.so")
	if err := os.WriteFile(mod, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "libvendor-link.so")
	if err := os.Symlink(mod, link); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "libother.so")
	tests := []struct {
		name   string
		tokens []Token
		want   []string // substrings of the one warning, none when nil
	}{
		{"ok no standby", []Token{{Name: "a", Module: mod}, {Name: "b", Module: mod}}, nil},
		{"ok pair on two modules", []Token{{Name: "a", Module: mod, Standby: "b"}, {Name: "b", Module: other}}, nil},
		{"warn pair on one module", []Token{{Name: "a", Module: mod, Standby: "b"}, {Name: "b", Module: mod}},
			[]string{"token[0].standby", `"a" and "b"`, "two modules"}},
		{"warn pair on one module through a link", []Token{{Name: "b", Module: other}, {Name: "a", Module: link, Standby: "c"}, {Name: "c", Module: mod}},
			[]string{"token[1].standby", `"a" and "c"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := (&Config{Tokens: tc.tokens}).TokenWarnings()
			if tc.want == nil {
				if len(got) != 0 {
					t.Errorf("TokenWarnings = %q, want none", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("TokenWarnings = %q, want one", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got[0], w) {
					t.Errorf("warning %q does not say %q", got[0], w)
				}
			}
		})
	}
}

// TestQueueWorkers: left out, queue.workers follows the sessions of the token that makes content
// keys (not a sign-only card's), within 4..64; set, it is taken as it is.
func TestQueueWorkers(t *testing.T) {
	tests := []struct {
		name string
		edit func(string) string
		want int
	}{
		{"default sessions", func(s string) string { return s }, 16},
		{"set", add("[queue]\nworkers = 3\n"), 3},
		{"few sessions", repl("max_sessions = 8", "max_sessions = 2"), 4},
		{"many sessions", repl("max_sessions = 8", "max_sessions = 100"), 64},
		{"content token's sessions", func(s string) string {
			return strings.Replace(twoTokens(s), "roles = [\"sign\", \"content\"]\n", "roles = [\"sign\", \"content\"]\nmax_sessions = 12\n", 1)
		}, 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.edit(base)))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.QueueWorkers(); got != tt.want {
				t.Errorf("QueueWorkers = %d, want %d", got, tt.want)
			}
		})
	}
}
