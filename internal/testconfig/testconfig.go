// Package testconfig writes the appliance configurations (TOML) the tests run with, so that each
// test says only what differs from the standard one: the SoftHSM2 test token, the test PKI as
// the directory, alice as the one sender.
package testconfig

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

// Sender is one [[sender]].
type Sender struct{ Address, Key, Cert string }

// Token is one [[token]].
type Token struct {
	Name, Module, URI, PINFile string
	Roles                      []string
	MaxSessions                int // 0: not written
}

// Config is a configuration file. Empty strings are not written.
type Config struct {
	// [hsm]: Module, Token and PINFile name one token; HSM holds further lines of the table
	// ("max_sessions = 4").
	Module, Token, PINFile string
	HSM                    []string
	Listen, Hostname       string // [smtp]
	NextHop                string // [relay]
	Spool                  string // [spool]
	Certs, Roots           string // [directory]
	Senders                []Sender
	Tokens                 []Token
	// Extra is appended as it is: more tables, or [[sender]] entries.
	Extra string
}

// Alice is the standard test sender, her key on the test token.
func Alice(env *softhsmtest.Env) Sender {
	return Sender{Address: "alice@example.test", Key: "pkcs11:token=appliance;object=alice", Cert: env.File("alice.chain.pem")}
}

// New is the standard configuration: the test token as [hsm], the test PKI's folder and roots,
// alice as the sender, a spool in dir, relaying to 127.0.0.1:2526.
func New(env *softhsmtest.Env, dir string) Config {
	return Config{Module: env.Module, Token: softhsmtest.TokenLabel, PINFile: env.PINFile,
		Hostname: "relay.example.test", NextHop: "127.0.0.1:2526", Spool: filepath.Join(dir, "spool"),
		Certs: env.File("certs"), Roots: env.File("roots.pem"), Senders: []Sender{Alice(env)}}
}

// TOML is the configuration file's text.
func (c Config) TOML() string {
	var b strings.Builder
	table := func(name string, kv ...string) {
		var lines []string
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] != "" {
				lines = append(lines, fmt.Sprintf("%s = %q", kv[i], kv[i+1]))
			}
		}
		if name == "hsm" {
			lines = append(lines, c.HSM...)
		}
		if len(lines) > 0 {
			fmt.Fprintf(&b, "[%s]\n%s\n", name, strings.Join(lines, "\n"))
		}
	}
	table("hsm", "module", c.Module, "token", c.Token, "pin_file", c.PINFile)
	table("smtp", "listen", c.Listen, "hostname", c.Hostname)
	table("relay", "next_hop", c.NextHop)
	table("spool", "dir", c.Spool)
	table("directory", "certs", c.Certs, "roots", c.Roots)
	for _, s := range c.Senders {
		fmt.Fprintf(&b, "[[sender]]\naddress = %q\nkey = %q\ncert = %q\n", s.Address, s.Key, s.Cert)
	}
	for _, t := range c.Tokens {
		roles := make([]string, len(t.Roles))
		for i, r := range t.Roles {
			roles[i] = fmt.Sprintf("%q", r)
		}
		fmt.Fprintf(&b, "[[token]]\nname = %q\nmodule = %q\nuri = %q\npin_file = %q\nroles = [%s]\n",
			t.Name, t.Module, t.URI, t.PINFile, strings.Join(roles, ", "))
		if t.MaxSessions > 0 {
			fmt.Fprintf(&b, "max_sessions = %d\n", t.MaxSessions)
		}
	}
	b.WriteString(c.Extra)
	return b.String()
}

// Write writes the configuration to dir/appliance.toml (mode 0600) and returns its path.
func (c Config) Write(tb testing.TB, dir string) string {
	tb.Helper()
	path := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(path, []byte(c.TOML()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
