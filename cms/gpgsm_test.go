package cms

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

// gpgsmHome makes a throwaway GNUPGHOME (docs/decisions.md, Interop facts) with user's key and the test CAs; its
// gpg-agent is stopped when the test ends.
func gpgsmHome(t testing.TB, env *softhsmtest.Env, user string) string {
	t.Helper()
	for _, tool := range []string{"gpgsm", "gpgconf"} {
		if _, err := exec.LookPath(tool); err != nil {
			if ci.On() {
				t.Fatalf("%s not found (CI set: a failure, not a skip)", tool)
			}
			t.Skipf("%s not found", tool)
		}
	}
	// A short path: gpg-agent's socket must fit in sun_path.
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		cmd.Run()
		os.RemoveAll(home)
	})
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	fpr, err := openssl(t, "x509", "-in", env.File("root.pem"), "-noout", "-fingerprint", "-sha1")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"gpg-agent.conf": "allow-loopback-pinentry\n",
		"gpgsm.conf":     "disable-crl-checks\ndisable-policy-checks\ndisable-dirmngr\n",
		"trustlist.txt":  strings.TrimSpace(strings.SplitN(string(fpr), "=", 2)[1]) + " S relax\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(home, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"--import", env.File("root.pem"), env.File("inter.pem")},
		{"--pinentry-mode", "loopback", "--passphrase-fd", "0", "--import", env.File(user + ".p12")},
	} {
		if _, err := gpgsmRun(home, args...); err != nil {
			t.Fatal(err)
		}
	}
	return home
}

// gpgsmRun runs gpgsm and returns its status lines; gpgsm may exit non-zero even when the
// operation worked (docs/decisions.md, Interop facts), so callers judge by the status lines.
func gpgsmRun(home string, args ...string) (string, error) {
	cmd := exec.Command("gpgsm", append([]string{"--batch", "--status-fd", "1"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	cmd.Stdin = strings.NewReader("test\n") // the PKCS#12 and key passphrase
	out, err := cmd.Output()
	return string(out), err
}

// TestGPGSM checks gpgsm 2.2 reads the compat profile with issuerAndSerialNumber ids and verifies
// RSA and ECDSA signatures. It cannot read SKI ids or AuthEnvelopedData, so those are not asked.
func TestGPGSM(t *testing.T) {
	env := softhsmtest.Setup(t)
	home := gpgsmHome(t, env, "bob")
	dir := t.TempDir()
	msg := []byte("Content-Type: text/plain\r\n\r\nfor gpgsm\r\n")
	t.Run("ok decrypt compat issuer", func(t *testing.T) {
		_, der := build(t, env, AES256CBC, KeyTransOptions{}, msg, "carol", "bob")
		in, out := writeFile(t, "in.der", der), filepath.Join(dir, "out")
		status, _ := gpgsmRun(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0", "-o", out, "--decrypt", in)
		got, _ := os.ReadFile(out)
		if !strings.Contains(status, "DECRYPTION_OKAY") || !bytes.Equal(got, msg) {
			t.Fatalf("status %s, content %q", status, got)
		}
	})
	t.Run("fail decrypt for another recipient", func(t *testing.T) {
		_, der := build(t, env, AES256CBC, KeyTransOptions{}, msg, "carol")
		status, _ := gpgsmRun(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0",
			"-o", filepath.Join(dir, "out2"), "--decrypt", writeFile(t, "in.der", der))
		if strings.Contains(status, "DECRYPTION_OKAY") {
			t.Fatal("gpgsm decrypted carol's message with bob's key")
		}
	})
	_, inter := env.Roots(t)
	for _, s := range []struct {
		name   string
		signer string
		opts   SignOptions
	}{
		{"rsa", "alice", SignOptions{}},
		{"rsa detached", "alice", SignOptions{Detached: true}},
		{"ecdsa", "frank", SignOptions{}},
	} {
		t.Run("ok verify "+s.name, func(t *testing.T) {
			der, err := Sign(env.Key(t, s.signer), []*x509.Certificate{env.Cert(t, s.signer), inter}, msg, s.opts)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"--verify", writeFile(t, "sig.der", der)}
			if s.opts.Detached {
				args = append(args, writeFile(t, "content", msg))
			} else {
				args = append([]string{"-o", filepath.Join(t.TempDir(), "out")}, args...)
			}
			status, _ := gpgsmRun(home, args...)
			if !strings.Contains(status, "GOODSIG") {
				t.Fatalf("status: %s", status)
			}
			if s.opts.Detached {
				args[len(args)-1] = writeFile(t, "bad", append(bytes.Clone(msg), 'x'))
				if status, _ := gpgsmRun(home, args...); strings.Contains(status, "GOODSIG") {
					t.Fatalf("tampered body: %s", status)
				}
			}
		})
	}
}
