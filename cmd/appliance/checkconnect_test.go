package main

import (
	"bufio"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

// fakeNextHop answers like a minimal SMTP server: a greeting, EHLO and QUIT, and STARTTLS
// with tc when it is not nil.
func fakeNextHop(t *testing.T, tc *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				c.Write([]byte("220 hop.example.test ESMTP ready\r\n"))
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
					case strings.HasPrefix(cmd, "EHLO") && tc != nil:
						c.Write([]byte("250-hop.example.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n"))
					case strings.HasPrefix(cmd, "EHLO"):
						c.Write([]byte("250-hop.example.test\r\n250 8BITMIME\r\n"))
					case cmd == "STARTTLS" && tc != nil:
						c.Write([]byte("220 go ahead\r\n"))
						_ = tls.Server(c, tc).Handshake()
						return
					case cmd == "QUIT":
						c.Write([]byte("221 bye\r\n"))
						return
					default:
						c.Write([]byte("502 no\r\n"))
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestCheckConfigConnect runs `check-config -connect` through the binary against the SoftHSM2
// token: one line per thing checked, every failure reported, not just the first.
func TestCheckConfigConnect(t *testing.T) {
	env := softhsmtest.Setup(t)
	hop := fakeNextHop(t, nil)
	check := func(t *testing.T, cfg string) binResult {
		t.Helper()
		for try := 1; ; try++ {
			r := runBin(t, env, "", nil, "check-config", "-connect", "-config", cfg)
			if try < 3 && strings.Contains(r.stdout, "FAIL  token") && strings.Contains(r.stdout, "CKR_") {
				continue // SoftHSM2 rewriting its token file under another process
			}
			return r
		}
	}
	rewrite := func(t *testing.T, cfg string, pairs ...string) string {
		t.Helper()
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cfg, []byte(strings.NewReplacer(pairs...).Replace(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
		return cfg
	}

	t.Run("ok every check", func(t *testing.T) {
		cfg, _ := certsConfig(t, env, "")
		rewrite(t, cfg, "127.0.0.1:2526", hop)
		r := check(t, cfg)
		if r.code != 0 {
			t.Fatal(r)
		}
		for _, want := range []string{
			"ok    token appliance module: ",
			"(SoftHSM)",
			`ok    token appliance: "appliance"`,
			"ok    token appliance login: ",
			"ok    sender alice@example.test key: pkcs11:token=appliance;object=alice",
			"ok    sender alice@example.test certificate: ",
			" expires ",
			"ok    directory: ",
			"ok    next hop " + hop + ": greets 220 hop.example.test ESMTP ready",
			"warn  next hop " + hop + ": no STARTTLS offered",
			cfg + ": ok",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q\n%s", want, r)
			}
		}
	})

	t.Run("fail STARTTLS certificate not trusted", func(t *testing.T) {
		pair := newTestPair(t, 7)
		cert, err := tls.X509KeyPair(pair.Cert, pair.Key)
		if err != nil {
			t.Fatal(err)
		}
		tlsHop := fakeNextHop(t, &tls.Config{Certificates: []tls.Certificate{cert}})
		cfg, _ := certsConfig(t, env, "")
		writeTestFile(t, filepath.Join(filepath.Dir(cfg), "tls.pem"), pair.Cert)
		writeTestFile(t, filepath.Join(filepath.Dir(cfg), "tls.key"), pair.Key)
		rewrite(t, cfg, "127.0.0.1:2526", tlsHop, "[smtp]\n", "[smtp]\ntls_cert = \"tls.pem\"\ntls_key = \"tls.key\"\n")
		r := check(t, cfg)
		if r.code != 1 {
			t.Fatal(r)
		}
		for _, want := range []string{
			"ok    next hop " + tlsHop + ": greets 220",
			"FAIL  next hop " + tlsHop + " STARTTLS: handshake: ",
			`warn  smtp.tls_cert: "CN=relay.example.test" expires `,
			"renew it",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q\n%s", want, r)
			}
		}
	})

	t.Run("fail every problem reported", func(t *testing.T) {
		// bob's key is not on the token and his certificate does not name carol; the next hop
		// is not listening; the LDAP server is not there.
		cfg, _ := certsConfig(t, env, `[[sender]]
address = "carol@example.test"
key = "pkcs11:token=appliance;object=nokey"
cert = "`+env.File("bob.chain.pem")+`"
[directory.ldap]
url = "ldap://127.0.0.1:1"
tls = "none"
base_dn = "dc=example,dc=test"
`)
		rewrite(t, cfg, "127.0.0.1:2526", "127.0.0.1:1")
		r := check(t, cfg)
		if r.code != 1 {
			t.Fatal(r)
		}
		for _, want := range []string{
			"ok    sender alice@example.test key: ",
			"FAIL  sender carol@example.test key: pkcs11:token=appliance;object=nokey: ",
			"FAIL  sender carol@example.test certificate: ",
			"does not name carol@example.test",
			"FAIL  next hop 127.0.0.1:1: ",
			"FAIL  ldap ldap://127.0.0.1:1: ",
		} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("stdout lacks %q\n%s", want, r)
			}
		}
		if !strings.Contains(r.stderr, "check(s) failed") {
			t.Errorf("stderr lacks the count\n%s", r)
		}
	})
}
