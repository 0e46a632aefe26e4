package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

// nssDB makes an NSS database holding user's PKCS#12 and trusting the test root.
func nssDB(t testing.TB, env *softhsmtest.Env, user string) string {
	t.Helper()
	for _, tool := range []string{"certutil", "pk12util", "cmsutil"} {
		if _, err := exec.LookPath(tool); err != nil {
			if ci.On() {
				t.Fatalf("%s not found (CI set: a failure, not a skip)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	dir := t.TempDir()
	db := "sql:" + dir
	for _, args := range [][]string{
		{"certutil", "-N", "--empty-password", "-d", db},
		{"pk12util", "-i", env.File(user + ".p12"), "-d", db, "-W", "test"},
		{"certutil", "-A", "-d", db, "-n", "root", "-t", "C,C,C", "-i", env.File("root.pem")},
		{"certutil", "-A", "-d", db, "-n", "inter", "-t", ",,", "-i", env.File("inter.pem")},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	return db
}

// cmsutil decodes der with NSS and returns the content and the -h status lines.
func cmsutil(t testing.TB, db string, der, detached []byte) (content, status []byte, err error) {
	t.Helper()
	dir := t.TempDir()
	in, out, hdr := filepath.Join(dir, "in"), filepath.Join(dir, "out"), filepath.Join(dir, "hdr")
	if err := os.WriteFile(in, der, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-D", "-d", db, "-p", "", "-i", in, "-o", out}
	if detached != nil {
		args = append(args, "-c", filepath.Join(dir, "content"))
		if err := os.WriteFile(args[len(args)-1], detached, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// cmsutil reads a password from stdin when it wants one: stdin stays closed.
	if o, err := exec.Command("cmsutil", args...).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("cmsutil: %v: %s", err, o)
	}
	content, _ = os.ReadFile(out)
	// A second run with -h writes the status lines; cmsutil exits 0 even for a bad signature.
	if o, err := exec.Command("cmsutil", append(args[:len(args):len(args)], "-h", "3", "-o", hdr)...).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("cmsutil -h: %v: %s", err, o)
	}
	status, _ = os.ReadFile(hdr)
	return content, status, nil
}

// TestNSS checks that NSS (Thunderbird's library) reads the compat profile with either
// identifier and verifies the signatures.
func TestNSS(t *testing.T) {
	env := softhsmtest.Setup(t)
	bob := nssDB(t, env, "bob")
	msg := []byte("Content-Type: text/plain\r\n\r\nfor nss\r\n")
	for _, v := range []struct {
		name string
		opts KeyTransOptions
	}{{"issuer", KeyTransOptions{}}, {"ski", KeyTransOptions{ID: SubjectKeyID}}} {
		t.Run("ok decrypt compat "+v.name, func(t *testing.T) {
			_, der := build(t, env, AES256CBC, v.opts, msg, "carol", "bob")
			got, _, err := cmsutil(t, bob, der, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %q", got)
			}
		})
	}
	t.Run("fail decrypt for another recipient", func(t *testing.T) {
		_, der := build(t, env, AES256CBC, KeyTransOptions{}, msg, "carol")
		if got, _, err := cmsutil(t, bob, der, nil); err == nil && bytes.Equal(got, msg) {
			t.Fatal("nss decrypted carol's message with bob's key")
		}
	})
	_, inter := env.Roots(t)
	for _, s := range []struct {
		name   string
		signer string
		opts   SignOptions
	}{
		{"rsa", "alice", SignOptions{EncryptionCert: env.Cert(t, "alice")}},
		{"rsa detached", "alice", SignOptions{Detached: true}},
		{"rsa sha512", "alice", SignOptions{Hash: crypto.SHA512}},
		{"ecdsa", "frank", SignOptions{}},
	} {
		t.Run("ok verify "+s.name, func(t *testing.T) {
			der, err := Sign(env.Key(t, s.signer), []*x509.Certificate{env.Cert(t, s.signer), inter}, msg, s.opts)
			if err != nil {
				t.Fatal(err)
			}
			var detached []byte
			if s.opts.Detached {
				detached = msg
			}
			_, status, err := cmsutil(t, bob, der, detached)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(status, []byte("signer0.status=GoodSignature")) {
				t.Fatalf("status: %s", status)
			}
			if s.opts.Detached {
				_, status, _ := cmsutil(t, bob, der, append(bytes.Clone(msg), 'x'))
				if bytes.Contains(status, []byte("GoodSignature")) {
					t.Fatalf("tampered body: %s", status)
				}
			}
		})
	}
}
