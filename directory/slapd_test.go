package directory

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/internal/ci"
)

// slapd is Debian's OpenLDAP server with its own configuration in a
// temporary folder, listening on loopback only: ldap:// (StartTLS offered)
// and ldaps://, with a server certificate made here.
type slapd struct {
	t                   testing.TB
	dir                 string
	ldapURL, ldapsURL   string
	caPEM               []byte
	cmd                 *exec.Cmd
	done                chan struct{}
	log                 bytes.Buffer
	ldapPort, ldapsPort string
}

const (
	slapdBase   = "dc=example,dc=test"
	slapdPeople = "ou=people,dc=example,dc=test"
	slapdAdmin  = "cn=admin,dc=example,dc=test"
	slapdPW     = "secret"
)

// startSlapd skips when slapd is missing, except under CI (any value) where that
// is a failure: CI must not pass by testing nothing.
func startSlapd(t testing.TB) *slapd {
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
	s := &slapd{t: t, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(s.dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	s.writeTLS()
	s.ldapPort, s.ldapsPort = freePort(t), freePort(t)
	s.ldapURL = "ldap://127.0.0.1:" + s.ldapPort
	s.ldapsURL = "ldaps://127.0.0.1:" + s.ldapsPort
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
pidfile %[1]s/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
TLSCertificateFile %[1]s/server.pem
TLSCertificateKeyFile %[1]s/server.key
database mdb
maxsize 10485760
suffix "%[2]s"
rootdn "%[3]s"
rootpw %[4]s
directory %[1]s/db
`, s.dir, slapdBase, slapdAdmin, slapdPW)
	if err := os.WriteFile(filepath.Join(s.dir, "slapd.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start(bin)
	t.Cleanup(s.stop)
	s.add(fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"+
		"dn: %s\nobjectClass: organizationalUnit\nou: people\n", slapdBase, slapdPeople))
	return s
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func (s *slapd) start(bin string) {
	s.t.Helper()
	s.cmd = exec.Command(bin, "-f", filepath.Join(s.dir, "slapd.conf"),
		"-h", s.ldapURL+"/ "+s.ldapsURL+"/", "-d", "0")
	s.log.Reset()
	s.cmd.Stdout, s.cmd.Stderr = &s.log, &s.log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("failed to start slapd: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			s.t.Fatalf("slapd exited: %s", s.log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+s.ldapPort, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("slapd did not listen: %s", s.log.String())
}

// stop ends slapd (SIGTERM, then SIGKILL); restart brings it back on the
// same ports with the same data.
func (s *slapd) stop() {
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

func (s *slapd) restart() {
	s.t.Helper()
	s.stop()
	s.start(s.bin())
}

func (s *slapd) bin() string {
	if p, err := exec.LookPath("slapd"); err == nil {
		return p
	}
	return "/usr/sbin/slapd"
}

func (s *slapd) add(ldif string) {
	s.t.Helper()
	cmd := exec.Command("ldapadd", "-x", "-H", s.ldapURL, "-D", slapdAdmin, "-w", slapdPW)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("ldapadd: %v: %s", err, out)
	}
}

// addPerson adds an inetOrgPerson with certificates in
// userCertificate;binary and, when smime is set, a PKCS #7 bundle in
// userSMIMECertificate.
func (s *slapd) addPerson(cn, mail string, certs []*x509.Certificate, smime []byte) {
	s.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nobjectClass: inetOrgPerson\ncn: %s\nsn: %s\nmail: %s\n", cn, slapdPeople, cn, cn, mail)
	for _, c := range certs {
		fmt.Fprintf(&b, "userCertificate;binary:: %s\n", base64.StdEncoding.EncodeToString(c.Raw))
	}
	if smime != nil {
		fmt.Fprintf(&b, "userSMIMECertificate:: %s\n", base64.StdEncoding.EncodeToString(smime))
	}
	s.add(b.String())
}

// writeTLS makes a throwaway CA and a server certificate for 127.0.0.1.
func (s *slapd) writeTLS() {
	s.t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "slapd test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, srvKey.Public(), caKey)
	if err != nil {
		s.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		s.t.Fatal(err)
	}
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	writeFile(s.t, filepath.Join(s.dir, "server.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}))
	writeFile(s.t, filepath.Join(s.dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
}
