package interop

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// gpgsmPassphrase protects imported keys in the agent; it is the PKCS #12 password too.
const gpgsmPassphrase = "test"

// GpgsmDecrypt decrypts DER (or an S/MIME message) with gpgsm in a GNUPGHOME holding user's key
// and returns the content. The verdict is the DECRYPTION_OKAY status line, not the exit code.
func GpgsmDecrypt(t testing.TB, pkiDir, user string, smimeOrDER []byte) ([]byte, error) {
	t.Helper()
	Need(t, "gpgsm", "gpg-agent", "gpgconf", "openssl")
	home := gnupgHome(t, pkiDir, user)
	dir := workDir(t)
	in := write(t, filepath.Join(dir, "in.der"), derOf(t, smimeOrDER))
	out := filepath.Join(dir, "out")
	r := run(dir, []string{"GNUPGHOME=" + home}, []byte(gpgsmPassphrase+"\n"), "gpgsm",
		"--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0", "--status-fd", "1",
		"--output", out, "--decrypt", in)
	st := statusLines(r.stdout)
	if !st["DECRYPTION_OKAY"] || st["DECRYPTION_FAILED"] {
		return nil, &ToolError{Tool: "gpgsm --decrypt (" + user + ")", Reason: "no DECRYPTION_OKAY status", Output: r.output()}
	}
	return read(t, out), nil
}

// GpgsmVerify verifies a signed message with gpgsm against the test roots and returns the signed
// content: multipart/signed (its first part canonicalized to CRLF first, as a mail client
// does), application/pkcs7-mime signed-data, or SignedData DER. The verdict is a GOODSIG and a
// TRUST_FULLY status line with no BADSIG or ERRSIG.
func GpgsmVerify(t testing.TB, pkiDir string, signed []byte) ([]byte, error) {
	t.Helper()
	Need(t, "gpgsm", "gpg-agent", "gpgconf", "openssl")
	home := gnupgHome(t, pkiDir, "")
	dir := workDir(t)
	args := []string{"--batch", "--status-fd", "1", "--verify"}
	out := filepath.Join(dir, "out")
	der, content, sig, err := splitSigned(signed)
	if err != nil {
		return nil, &ToolError{Tool: "gpgsm --verify", Reason: err.Error()}
	}
	if der != nil {
		args = append([]string{"--output", out}, args...)
		args = append(args, write(t, filepath.Join(dir, "sig.der"), der))
	} else {
		args = append(args, write(t, filepath.Join(dir, "sig.p7s"), sig), write(t, filepath.Join(dir, "content"), content))
	}
	r := run(dir, []string{"GNUPGHOME=" + home}, nil, "gpgsm", args...)
	st := statusLines(r.stdout)
	if !st["GOODSIG"] || !st["TRUST_FULLY"] || st["BADSIG"] || st["ERRSIG"] {
		return nil, &ToolError{Tool: "gpgsm --verify", Reason: "no GOODSIG and TRUST_FULLY status", Output: r.output()}
	}
	if content == nil {
		content = read(t, out)
	}
	return content, nil
}

// statusLines collects the keywords of "[GNUPG:] KEYWORD ..." lines.
func statusLines(out []byte) map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "[GNUPG:]" {
			m[f[1]] = true
		}
	}
	return m
}

// gnupgHome returns this binary's GNUPGHOME for user ("" for none) under the PKI in pkiDir,
// making it on first use as docs/decisions.md ("Interop facts measured") says: loopback pinentry (and cheap key
// protection), no CRLs, policies or
// dirmngr, the root trusted by its SHA-1 fingerprint, root and intermediate imported, and the
// user's PKCS #12 imported with the passphrase on fd 0.
func gnupgHome(t testing.TB, pkiDir, user string) string {
	t.Helper()
	key := pkiDir + "\x00" + user
	state.Lock()
	defer state.Unlock()
	if h, ok := state.gnupg[key]; ok {
		return h
	}
	// A short path under /tmp: gpg-agent's socket path must fit in sockaddr_un.
	home, err := os.MkdirTemp("", "gh-")
	if err == nil {
		err = os.Chmod(home, 0o700)
	}
	if err != nil {
		t.Fatalf("interop: failed to make GNUPGHOME: %v", err)
	}
	if state.gnupg == nil {
		state.gnupg = map[string]string{}
	}
	state.gnupg[key] = home // so Cleanup removes it even if setup fails below

	fpr := run(home, nil, nil, "openssl", "x509", "-noout", "-fingerprint", "-sha1", "-in", pkiFile(t, pkiDir, "root.pem"))
	_, hex, ok := strings.Cut(strings.TrimSpace(string(fpr.stdout)), "=")
	if fpr.err != nil || !ok {
		t.Fatalf("interop: failed to read root fingerprint: %v\n%s", fpr.err, fpr.output())
	}
	for name, text := range map[string]string{
		// The agent calibrates its key-protection hashing to take 100 ms at start-up; on a loaded
		// test machine that made each import and decryption take seconds. Test keys need no
		// protection against brute force, so the minimum count keeps them fast.
		"gpg-agent.conf": "allow-loopback-pinentry\ns2k-count 65536\ns2k-calibration 1\n",
		"gpgsm.conf":     "disable-crl-checks\ndisable-policy-checks\ndisable-dirmngr\n",
		"trustlist.txt":  hex + " S relax\n",
	} {
		write(t, filepath.Join(home, name), []byte(text))
	}
	env := []string{"GNUPGHOME=" + home}
	if r := run(home, env, nil, "gpgsm", "--batch", "--import", pkiFile(t, pkiDir, "root.pem"), pkiFile(t, pkiDir, "inter.pem")); r.err != nil {
		t.Fatalf("interop: failed to import CA certificates into gpgsm: %v\n%s", r.err, r.output())
	}
	if user != "" {
		r := run(home, env, []byte(gpgsmPassphrase+"\n"), "gpgsm", "--batch", "--pinentry-mode", "loopback",
			"--passphrase-fd", "0", "--import", pkiFile(t, pkiDir, user+".p12"))
		if r.err != nil || !bytes.Contains(r.stderr, []byte("secret keys imported: 1")) {
			t.Fatalf("interop: failed to import %q into gpgsm (EC keys crash gpgsm 2.2): %v\n%s", user+".p12", r.err, r.output())
		}
	}
	return home
}
