package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// The security tests run the real daemon with [smtp] keys that the harness's Config does not
// know; startSecured writes the config through a map so the harness stays as it is.

// startSecured starts `appliance serve` for cfg with extra keys merged into [smtp].
func startSecured(t *testing.T, env *softhsmtest.Env, cfg Config, smtpExtra map[string]any) *Daemon {
	t.Helper()
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if _, err := toml.Decode(b.String(), &m); err != nil {
		t.Fatal(err)
	}
	s := m["smtp"].(map[string]any)
	for k, v := range smtpExtra {
		s[k] = v
	}
	b.Reset()
	if err := toml.NewEncoder(&b).Encode(m); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "appliance.toml")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Bin: Build(t), ConfigPath: path, Addr: cfg.SMTP.Listen, Env: []string{"SOFTHSM2_CONF=" + env.Conf}}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("appliance serve log:\n%s", tail(d.Log(), 80))
		}
	})
	if err := d.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

// serverTLS writes a throwaway certificate for 127.0.0.1 and returns the file paths and a client
// config trusting it.
func serverTLS(t *testing.T) (certFile, keyFile string, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "relay.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"relay.example.test"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.pem"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
}

// writeUsers writes a users file (mode 0600) of name -> password and sender patterns.
func writeUsers(t *testing.T, users map[string][2]string) string {
	t.Helper()
	var b strings.Builder
	for name, u := range users {
		h, err := bcrypt.GenerateFromPassword([]byte(u[0]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s:%s\n", name, h, u[1])
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// dialFrom connects to addr from the loopback address src (all of 127/8 is local on Linux), so
// one test can be a trusted host, a host trusted for other senders, and an outsider. With
// tlsConfig it says STARTTLS first.
func dialFrom(t *testing.T, src, addr string, tlsConfig ...*tls.Config) *smtp.Client {
	t.Helper()
	conn := connFrom(t, src, addr)
	var c *smtp.Client
	if len(tlsConfig) > 0 {
		var err error
		if c, err = smtp.NewClientStartTLS(conn, tlsConfig[0]); err != nil {
			t.Fatalf("STARTTLS: %v", err)
		}
	} else {
		c = smtp.NewClient(conn)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Hello("client.example.test"); err != nil {
		t.Fatalf("EHLO: %v", err)
	}
	return c
}

func connFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("failed to dial %s from %s: %v", addr, src, err)
	}
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return conn
}

// replyOf is "NNN X.Y.Z" of an error from go-smtp's client, "250" for nil.
func replyOf(err error) string {
	if err == nil {
		return "250"
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	return "error: " + err.Error()
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

const (
	srcTrustedAlice = "127.0.0.1" // trusted for alice only
	srcTrustedBob   = "127.0.0.2" // trusted for bob only: may not use alice
	srcOutside      = "127.0.0.3" // in no trusted network
	srcGuesser      = "127.0.0.5" // wrong passwords, delays
	srcLockout      = "127.0.0.6" // locked out
	srcSwaksGuesser = "127.0.0.7" // swaks with a wrong password
	bodyMarker      = "BODY-MARKER-7f3c1e"
	alicePassword   = "alice-pw-9b2d"
	bobPassword     = "bob-pw-41aa"
)

func secMessage(from, sender string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", from)
	if sender != "" {
		fmt.Fprintf(&b, "Sender: %s\r\n", sender)
	}
	fmt.Fprintf(&b, "To: %s\r\nSubject: security\r\nMessage-ID: <%s@client.example.test>\r\nDate: %s\r\n\r\n%s\r\n",
		bob, randomID(), time.Now().UTC().Format(time.RFC1123Z), bodyMarker)
	return []byte(b.String())
}

// transact runs MAIL, RCPT bob and DATA on c and returns the reply of the step that failed
// ("MAIL 530 5.7.0") or "250".
func transact(c *smtp.Client, from string, msg []byte) string {
	if err := c.Mail(from, nil); err != nil {
		return "MAIL " + replyOf(err)
	}
	if err := c.Rcpt(bob, nil); err != nil {
		return "RCPT " + replyOf(err)
	}
	w, err := c.Data()
	if err != nil {
		return "DATA " + replyOf(err)
	}
	if _, err := w.Write(msg); err != nil {
		return "DATA " + replyOf(err)
	}
	if err := w.Close(); err != nil {
		return "END " + replyOf(err)
	}
	return "250"
}

func TestSecurity(t *testing.T) {
	t.Parallel()
	env := softhsmtest.Setup(t)
	Build(t)
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	certFile, keyFile, clientTLS := serverTLS(t)
	tlsAddr := FreeAddr(t)
	users := writeUsers(t, map[string][2]string{
		"alice":   {alicePassword, alice},
		"bobuser": {bobPassword, bob},
	})
	d := startSecured(t, env, cfg, map[string]any{
		"tls_cert":   certFile,
		"tls_key":    keyFile,
		"listen_tls": tlsAddr,
		"users_file": users,
		"trusted_networks": []map[string]any{
			{"cidr": srcTrustedAlice, "senders": []string{alice}},
			{"cidr": srcTrustedBob, "senders": []string{bob}},
		},
		"auth_failure_delay":       "300ms",
		"max_auth_failures":        3,
		"max_auth_failures_per_ip": 3,
		"auth_lockout":             "10m",
	})
	starttls := func(t *testing.T, src string) *smtp.Client {
		return dialFrom(t, src, d.Addr, clientTLS)
	}
	login := func(t *testing.T, src, user, pass string) *smtp.Client {
		c := starttls(t, src)
		if err := c.Auth(saslPlain{user, pass}); err != nil {
			t.Fatalf("AUTH %s: %v", user, err)
		}
		return c
	}

	// Everything refused first: the sink must stay empty, so nothing was signed for anyone.
	refused := []struct {
		name string
		run  func(t *testing.T) string
		want string
	}{
		{"fail open relay from outside as a configured sender", func(t *testing.T) string {
			return transact(dialFrom(t, srcOutside, d.Addr), alice, secMessage(alice, ""))
		}, "MAIL 530 5.7.0"},
		{"fail open relay from outside as a stranger", func(t *testing.T) string {
			return transact(dialFrom(t, srcOutside, d.Addr), "spammer@example.net", secMessage("spammer@example.net", ""))
		}, "MAIL 530 5.7.0"},
		{"fail open relay from outside with the null sender", func(t *testing.T) string {
			return transact(dialFrom(t, srcOutside, d.Addr), "", secMessage(alice, ""))
		}, "MAIL 530 5.7.0"},
		{"fail open relay from outside over tls without auth", func(t *testing.T) string {
			return transact(starttls(t, srcOutside), alice, secMessage(alice, ""))
		}, "MAIL 530 5.7.0"},
		{"fail rcpt without mail from outside", func(t *testing.T) string {
			return "RCPT " + replyOf(dialFrom(t, srcOutside, d.Addr).Rcpt(bob, nil))
		}, "RCPT 502 5.5.1"},
		{"fail auth without tls", func(t *testing.T) string {
			c := dialFrom(t, srcOutside, d.Addr)
			if ok, _ := c.Extension("AUTH"); ok {
				t.Error("AUTH advertised before STARTTLS")
			}
			_, code, msg := rawCmd(t, srcOutside, d.Addr, "AUTH PLAIN "+plainAuth("alice", alicePassword))
			return fmt.Sprintf("AUTH %d %s", code, strings.Fields(msg + " ")[0])
		}, "AUTH 523 5.7.10"},
		{"fail auth login without tls", func(t *testing.T) string {
			_, code, msg := rawCmd(t, srcOutside, d.Addr, "AUTH LOGIN")
			return fmt.Sprintf("AUTH %d %s", code, strings.Fields(msg + " ")[0])
		}, "AUTH 523 5.7.10"},
		{"fail swaks auth login with a wrong password", func(t *testing.T) string {
			out, err := swaksLogin(t, srcSwaksGuesser, d.Addr, "alice", "wrong", secMessage(alice, ""))
			if err == nil {
				t.Errorf("swaks succeeded with a wrong password:\n%s", out)
			}
			if !strings.Contains(out, "AUTH LOGIN") {
				t.Errorf("swaks did not use AUTH LOGIN:\n%s", out)
			}
			for _, r := range []string{"535 5.7.8", "421 4.7.0", "454 4.7.0"} {
				if strings.Contains(out, "<~* "+r) || strings.Contains(out, "<~  "+r) {
					return "AUTH " + r
				}
			}
			return "AUTH ?\n" + out
		}, "AUTH 535 5.7.8"},
		{"fail user sending as someone else", func(t *testing.T) string {
			return transact(login(t, srcOutside, "bobuser", bobPassword), alice, secMessage(alice, ""))
		}, "MAIL 550 5.7.1"},
		{"fail header from differs from the authorized envelope sender", func(t *testing.T) string {
			return transact(login(t, srcOutside, "alice", alicePassword), alice, secMessage(bob, ""))
		}, "END 550 5.7.1"},
		{"fail header sender names someone else", func(t *testing.T) string {
			return transact(login(t, srcOutside, "alice", alicePassword), alice, secMessage(alice, bob))
		}, "END 550 5.7.1"},
		{"fail header from with an extra author", func(t *testing.T) string {
			return transact(login(t, srcOutside, "alice", alicePassword), alice, secMessage(alice+", "+bob, alice))
		}, "END 550 5.7.1"},
		{"fail trusted network outside its mapped senders", func(t *testing.T) string {
			return transact(dialFrom(t, srcTrustedBob, d.Addr), alice, secMessage(alice, ""))
		}, "MAIL 550 5.7.1"},
		{"fail trusted network mapped sender in the envelope but not in From", func(t *testing.T) string {
			// bob is bob's network's to use but has no key: the envelope passes authorization
			// and then the configured-sender check refuses it.
			return transact(dialFrom(t, srcTrustedBob, d.Addr), bob, secMessage(bob, ""))
		}, "MAIL 550 5.7.1"},
		{"fail trusted host for alice with header from bob", func(t *testing.T) string {
			return transact(dialFrom(t, srcTrustedAlice, d.Addr), alice, secMessage(bob, ""))
		}, "END 550 5.7.1"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.run(t)
			// With mail lists configured a refused MAIL FROM may be held for the RCPTs to judge
			// (smtpfront.ListPolicy): a refusal at RCPT instead of MAIL is the same refusal.
			if strings.HasPrefix(tt.want, "MAIL ") && strings.HasPrefix(got, "RCPT ") {
				got = "MAIL " + strings.TrimPrefix(got, "RCPT ")
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("fail wrong password with a growing delay", func(t *testing.T) {
		c := starttls(t, srcGuesser)
		for i, min := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
			start := time.Now()
			err := c.Auth(saslPlain{"alice", "wrong"})
			if got := replyOf(err); got != "535 5.7.8" {
				t.Fatalf("attempt %d: %q, want 535 5.7.8", i+1, got)
			}
			if d := time.Since(start); d < min {
				t.Errorf("attempt %d answered after %v, want at least %v", i+1, d, min)
			}
		}
		// The third failure on this connection ends it.
		if got := replyOf(c.Auth(saslPlain{"alice", "wrong"})); !strings.HasPrefix(got, "421 4.7.0") {
			t.Fatalf("third attempt: %q, want 421 4.7.0", got)
		}
	})
	t.Run("fail lockout refuses even the right password", func(t *testing.T) {
		for i := 0; i < 3; i++ {
			c := starttls(t, srcLockout)
			if got := replyOf(c.Auth(saslPlain{"nobody", "x"})); got != "535 5.7.8" {
				t.Fatalf("failure %d: %q", i+1, got)
			}
		}
		c := starttls(t, srcLockout)
		if got := replyOf(c.Auth(saslPlain{"alice", alicePassword})); got != "454 4.7.0" {
			t.Fatalf("right password while locked out: %q, want 454 4.7.0", got)
		}
	})

	t.Run("fail nothing was signed or relayed", func(t *testing.T) {
		time.Sleep(2 * time.Second) // a worker would have delivered by now
		if txs := s.Transactions(); len(txs) != 0 {
			t.Fatalf("%d transactions reached the next hop after refusals: %v", len(txs), rcptSets(txs))
		}
	})

	accepted := []struct {
		name string
		run  func(t *testing.T) string
	}{
		{"ok user alice over starttls", func(t *testing.T) string {
			return transact(login(t, srcOutside, "alice", alicePassword), alice, secMessage(alice, ""))
		}},
		{"ok user alice over implicit tls", func(t *testing.T) string {
			conn, err := tls.Dial("tcp", tlsAddr, clientTLS)
			if err != nil {
				t.Fatalf("implicit TLS: %v", err)
			}
			if v := conn.ConnectionState().Version; v < tls.VersionTLS12 {
				t.Errorf("TLS version %x", v)
			}
			c := smtp.NewClient(conn)
			defer c.Close()
			if err := c.Hello("client.example.test"); err != nil {
				t.Fatal(err)
			}
			if err := c.Auth(saslPlain{"alice", alicePassword}); err != nil {
				t.Fatalf("AUTH: %v", err)
			}
			return transact(c, alice, secMessage(alice, ""))
		}},
		{"ok user alice with swaks auth login over starttls", func(t *testing.T) string {
			out, err := swaksLogin(t, srcOutside, d.Addr, "alice", alicePassword, secMessage(alice, ""))
			if err != nil {
				return err.Error()
			}
			// swaks answers the Username: and Password: challenges itself (no initial response).
			for _, want := range []string{"AUTH LOGIN", "334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.0.0", "250 2.0.0"} {
				if !strings.Contains(out, want) {
					return fmt.Sprintf("no %q in the swaks transcript:\n%s", want, out)
				}
			}
			return "250"
		}},
		{"ok trusted network for its mapped sender without auth", func(t *testing.T) string {
			return transact(dialFrom(t, srcTrustedAlice, d.Addr), alice, secMessage(alice, alice))
		}},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run(t); got != "250" {
				t.Fatalf("got %q, want 250", got)
			}
		})
	}
	t.Run("ok exactly the accepted messages were delivered", func(t *testing.T) {
		txs, err := WaitPackages(s, len(accepted), 60*time.Second, time.Second)
		if err != nil {
			t.Fatalf("%v: %v", err, rcptSets(txs))
		}
	})
	t.Run("ok secrets stay out of the log and the replies", func(t *testing.T) {
		log := d.Log()
		for _, secret := range []string{alicePassword, bobPassword, "wrong", bodyMarker, plainAuth("alice", alicePassword)} {
			if strings.Contains(log, secret) {
				t.Errorf("the log contains %q", secret)
			}
		}
		// A refusal names no file, key, token or other recipient.
		_, code, msg := rawCmd(t, srcTrustedBob, d.Addr, "MAIL FROM:<alice@example.test>")
		for _, leak := range []string{"/", "pkcs11", "token", "softhsm", "bob", "example.test"} {
			if strings.Contains(strings.ToLower(msg), leak) {
				t.Errorf("reply %d %q reveals %q", code, msg, leak)
			}
		}
	})
	t.Run("ok sighup rereads the users file", func(t *testing.T) {
		h, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(users, []byte("carol:"+string(h)+":"+alice+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(d.Log(), `"users reloaded"`) {
			if time.Now().After(deadline) {
				t.Fatal("no reload logged after SIGHUP")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := dialFrom(t, srcOutside, d.Addr, clientTLS).Auth(saslPlain{"alice", alicePassword}); replyOf(err) != "535 5.7.8" {
			t.Errorf("removed user alice: %q, want 535 5.7.8", replyOf(err))
		}
		if got := transact(login(t, srcOutside, "carol", "carol-pw"), alice, secMessage(alice, "")); got != "250" {
			t.Errorf("new user carol: %q, want 250", got)
		}
	})
	t.Run("ok sighup rereads the tls certificate", func(t *testing.T) {
		reloads := func() int { return strings.Count(d.Log(), `"tls certificate reloaded"`) }
		before := reloads()
		// A renewed pair, installed over the old files as an operator would.
		newCert, newKey, newClientTLS := serverTLS(t)
		for src, dst := range map[string]string{newCert: certFile, newKey: keyFile} {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		d.cmd.Process.Signal(syscall.SIGHUP)
		deadline := time.Now().Add(10 * time.Second)
		for reloads() <= before {
			if time.Now().After(deadline) {
				t.Fatal("no tls reload logged after SIGHUP")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The new certificate verifies on both listeners; the old one no longer does.
		dialFrom(t, srcOutside, d.Addr, newClientTLS)
		conn, err := tls.Dial("tcp", tlsAddr, newClientTLS)
		if err != nil {
			t.Fatalf("implicit TLS with the renewed certificate: %v", err)
		}
		conn.Close()
		if conn, err := tls.Dial("tcp", tlsAddr, clientTLS); err == nil {
			conn.Close()
			t.Error("the old certificate is still presented after the reload")
		}
	})
	if !d.Running() {
		t.Fatal("daemon died")
	}
}

// swaksLogin submits msg from alice to bob with swaks from src, over STARTTLS with AUTH LOGIN, as
// an operator would try a relay, and returns swaks's transcript.
func swaksLogin(t *testing.T, src, addr, user, pass string, msg []byte) (string, error) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "msg.eml")
	if _, err := WriteForSwaks(file, msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "swaks", "--server", host, "--port", port, "--local-interface", src,
		"--from", alice, "--to", bob, "--data", "@"+file, "--helo", "client.example.test",
		"--tls", "--auth", "LOGIN", "--auth-user", user, "--auth-password", pass)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("swaks failed: %w\n%s", err, out)
	}
	return string(out), nil
}

// rawCmd connects from src, greets, sends one command line and returns the reply.
func rawCmd(t *testing.T, src, addr, line string) (string, int, string) {
	t.Helper()
	tc := textproto.NewConn(connFrom(t, src, addr))
	if _, _, err := tc.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Cmd("EHLO client.example.test"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tc.ReadResponse(250); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Cmd("%s", line); err != nil {
		t.Fatal(err)
	}
	code, msg, err := tc.ReadResponse(0)
	var te *textproto.Error
	if errors.As(err, &te) {
		code, msg = te.Code, te.Msg
	}
	return line, code, msg
}

// saslPlain is SASL PLAIN without go-sasl's client, which refuses to send over plaintext;
// the daemon is what must refuse.
type saslPlain struct{ user, pass string }

func (p saslPlain) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + p.user + "\x00" + p.pass), nil
}

func (p saslPlain) Next([]byte) ([]byte, error) { return nil, errors.New("unexpected challenge") }
