package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/internal/ci"
	"appliance/internal/lockedbuf"
	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
	"appliance/smime"
)

// ldapServer is Debian's slapd with its own configuration in a temporary folder, on a loopback
// port; stop and start simulate an outage.
type ldapServer struct {
	t    *testing.T
	bin  string
	dir  string
	url  string
	cmd  *exec.Cmd
	done chan struct{}
	log  lockedbuf.Buffer
}

const (
	ldapPeople = "ou=people,dc=example,dc=test"
	ldapAdmin  = "cn=admin,dc=example,dc=test"
	ldapPW     = "secret"
)

// startLDAP skips without slapd, except under CI (any value), where that is a failure.
func startLDAP(t *testing.T) *ldapServer {
	t.Helper()
	bin, err := exec.LookPath("slapd")
	if err != nil {
		bin = "/usr/sbin/slapd"
	}
	_, err1 := os.Stat(bin)
	_, err2 := exec.LookPath("ldapadd")
	if err1 != nil || err2 != nil {
		if ci.On() {
			t.Fatal("slapd or ldapadd missing under CI (any value) (apt-get install slapd ldap-utils)")
		}
		t.Skip("slapd or ldapadd not installed")
	}
	s := &ldapServer{t: t, bin: bin, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.url = "ldap://" + FreeAddr(t)
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 10485760
suffix "dc=example,dc=test"
rootdn "%[2]s"
rootpw %[3]s
directory %[1]s/db
`, s.dir, ldapAdmin, ldapPW)
	if err := os.WriteFile(filepath.Join(s.dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()
	t.Cleanup(s.stop)
	s.add("dn: dc=example,dc=test\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n" +
		"dn: " + ldapPeople + "\nobjectClass: organizationalUnit\nou: people\n")
	return s
}

func (s *ldapServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(s.bin, "-f", filepath.Join(s.dir, "slapd.conf"), "-h", s.url+"/", "-d", "0")
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("failed to start slapd: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
	addr := strings.TrimPrefix(s.url, "ldap://")
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-s.done:
			s.t.Fatalf("slapd exited: %s", s.log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
	}
	s.t.Fatalf("slapd did not listen on %s: %s", addr, s.log.String())
}

func (s *ldapServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (s *ldapServer) add(ldif string) {
	s.t.Helper()
	cmd := exec.Command("ldapadd", "-x", "-H", s.url, "-D", ldapAdmin, "-w", ldapPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("ldapadd: %v: %s", err, out)
	}
}

func (s *ldapServer) addPerson(cn, mail string, c *x509.Certificate) {
	s.t.Helper()
	s.add(fmt.Sprintf("dn: cn=%s,%s\nobjectClass: inetOrgPerson\ncn: %s\nsn: %s\nmail: %s\nuserCertificate;binary:: %s\n",
		cn, ldapPeople, cn, cn, mail, base64.StdEncoding.EncodeToString(c.Raw)))
}

// ldapRig is a daemon whose only certificate source is slapd, with CRLs fetched from a local
// HTTP server.
type ldapRig struct {
	env     *softhsmtest.Env
	ldap    *ldapServer
	sink    *sink.Sink
	daemon  *Daemon
	checker *Checker
	certs   string // the (empty) folder, where certs learn files what it learns
	config  string
}

func newLDAPRig(t *testing.T) *ldapRig {
	t.Helper()
	env := softhsmtest.Setup(t)
	bin := Build(t)
	l := startLDAP(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	// A certificate with a CRL distribution point, revoked by the CRL served there.
	inter, interKey := env.Cert(t, "inter"), env.Key(t, "inter")
	var crl []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(crl) }))
	t.Cleanup(srv.Close)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: "revoked"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{"revoked@example.test"}, CRLDistributionPoints: []string{srv.URL + "/inter.crl"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, env.Cert(t, "bob").PublicKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	revoked, _ := x509.ParseCertificate(der)
	crl, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1),
		ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.SerialNumber, RevocationTime: now}}},
		inter, interKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bob", "carol", "dave", "erin", "olivia"} {
		c := env.Cert(t, name)
		l.addPerson(name, c.EmailAddresses[0], c)
	}
	l.addPerson("revoked", "revoked@example.test", revoked)

	dir := t.TempDir()
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(dir, "ldap.pw")
	if err := os.WriteFile(pwFile, []byte(ldapPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := NewConfig(t, env, s.Addr())
	cfg.Directory.Certs = certs
	cfg.Queue.Retry = []string{"1s"}
	var b bytes.Buffer
	path, err := cfg.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The harness's Config knows only the folder; the LDAP settings go in as TOML.
	b.WriteString(strings.Replace(string(raw), "[directory]\n", "[directory]\n  sources = [\"ldap\"]\n  crl_url_prefixes = ["+fmt.Sprintf("%q", srv.URL+"/")+"]\n", 1))
	fmt.Fprintf(&b, "\n[directory.ldap]\nurl = %q\ntls = \"none\"\nbase_dn = %q\nbind_dn = %q\nbind_password_file = %q\ncache_ttl = \"1s\"\nnegative_ttl = \"1s\"\ntimeout = \"2s\"\n",
		l.url, ldapPeople, ldapAdmin, pwFile)
	if !strings.Contains(b.String(), `sources = ["ldap"]`) {
		t.Fatalf("could not place directory.sources in:\n%s", raw)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	d := &Daemon{Bin: bin, ConfigPath: path, Addr: cfg.SMTP.Listen, Env: []string{"SOFTHSM2_CONF=" + env.Conf}}
	r := &ldapRig{env: env, ldap: l, sink: s, daemon: d, checker: &Checker{PKI: pki, Tmp: t.TempDir()}, certs: certs, config: path}
	return r
}

func (r *ldapRig) start(t *testing.T) {
	t.Helper()
	if err := r.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.daemon.Stop()
		if t.Failed() {
			t.Logf("appliance serve log:\n%s", tail(r.daemon.Log(), 60))
		}
	})
	if err := r.daemon.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

func (r *ldapRig) submit(t *testing.T, m Message, rcpt []string) (Result, Expect) {
	t.Helper()
	raw := m.Bytes()
	res, err := SubmitGo(r.daemon.Addr, m.From, rcpt, raw)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mail != nil || res.Data != nil {
		t.Fatalf("submission refused: MAIL %v, DATA %v", res.Mail, res.Data)
	}
	return res, Expect{From: m.From, To: m.To, Cc: m.Cc, Bcc: m.Bcc, Rcpt: res.Accepted(rcpt), Message: raw}
}

// TestLDAPServe runs the daemon with LDAP as the only certificate source: sealing for people
// found there, refusing a certificate revoked by a fetched CRL, deferring through an LDAP outage
// without losing the message, and using the modern profile for a correspondent learnt with
// `appliance certs learn`.
func TestLDAPServe(t *testing.T) {
	r := newLDAPRig(t)

	// certs learn before the daemon starts, as an operator would (or SIGHUP after).
	entity := "Content-Type: text/plain\r\n\r\nI read GCM\r\n"
	olivia := r.env.Cert(t, "olivia")
	sig, err := cms.Sign(r.env.Key(t, "olivia"), []*x509.Certificate{olivia, r.env.Cert(t, "inter")}, []byte(entity),
		cms.SignOptions{Detached: true, Capabilities: []cms.AlgorithmIdentifier{{Algorithm: oid.AES256GCM}, {Algorithm: oid.AES256CBC}}})
	if err != nil {
		t.Fatal(err)
	}
	eml := filepath.Join(t.TempDir(), "olivia.eml")
	signed := append([]byte("From: olivia@example.org\r\nTo: alice@example.test\r\nMIME-Version: 1.0\r\n"), smime.SignedEntity([]byte(entity), sig, "sha-256")...)
	if err := os.WriteFile(eml, signed, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := Run(ctx, r.env, r.daemon.Bin, nil, "certs", "learn", eml, "-config", r.config)
	if err != nil {
		t.Fatalf("certs learn: %v", err)
	}
	if !bytes.Contains(out, []byte("modern")) {
		t.Fatalf("certs learn did not report the modern profile:\n%s", out)
	}
	r.start(t)

	t.Run("ok sealed for LDAP recipients, revoked refused at RCPT", func(t *testing.T) {
		r.sink.Reset()
		res, exp := r.submit(t, Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "ldap", Text: "from ldap\n"},
			[]string{bob, carol, dave, "revoked@example.test"})
		if res.Rcpt["revoked@example.test"] == nil || !strings.Contains(res.Rcpt["revoked@example.test"].Error(), "550") {
			t.Errorf("revoked recipient: %v, want 550", res.Rcpt["revoked@example.test"])
		}
		txs, err := WaitPackages(r.sink, 2, 60*time.Second, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.checker.Check(ctx, exp, txs); err != nil {
			t.Fatalf("check: %v", err)
		}
	})

	t.Run("ok learnt capabilities give the modern profile", func(t *testing.T) {
		r.sink.Reset()
		_, exp := r.submit(t, Message{From: alice, To: []string{"olivia@example.org"}, Subject: "gcm", Text: "modern\n"}, []string{"olivia@example.org"})
		txs, err := WaitPackages(r.sink, 1, 60*time.Second, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := r.checker.Check(ctx, exp, txs)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if ct := pkgs[0].OuterHeader.Get("Content-Type"); !strings.Contains(ct, "authEnveloped-data") {
			t.Errorf("Content-Type %q, want authEnveloped-data", ct)
		}
	})

	t.Run("ok outage defers, nothing is lost", func(t *testing.T) {
		r.sink.Reset()
		time.Sleep(1100 * time.Millisecond) // past cache_ttl: erin must be looked up during the outage
		r.ldap.stop()
		_, exp := r.submit(t, Message{From: alice, To: []string{erin}, Subject: "outage", Text: "held\n"}, []string{erin})
		if len(exp.Rcpt) != 1 {
			t.Fatalf("erin not accepted during the outage (must be spooled, not refused): %v", exp.Rcpt)
		}
		time.Sleep(2500 * time.Millisecond)
		if n := len(r.sink.Transactions()); n != 0 {
			t.Fatalf("%d transactions during the outage", n)
		}
		r.ldap.start()
		txs, err := WaitPackages(r.sink, 1, 60*time.Second, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		pkgs, err := r.checker.Check(ctx, exp, txs)
		if err != nil {
			t.Fatalf("check: %v", err)
		}
		if pkgs[0].Kind != Encrypted {
			t.Errorf("kind %q after the outage", pkgs[0].Kind)
		}
	})
}
