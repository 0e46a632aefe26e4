// Package softhsmtest gives tests a real SoftHSM2 token and a test PKI.
//
// The PKI comes from softhsm-test/mkpki.sh and is cached between test binaries (it takes seconds
// to make and nothing in it changes unless the script does); each test binary gets its own token
// from softhsm-test/mktoken.sh, so tests may add objects freely. Under CI (any value) a missing SoftHSM2
// fails the test instead of skipping it: CI must never pass by testing nothing.
//
// APPLIANCE_TEST_TOKEN=opencryptoki makes Setup give opencryptoki's software token instead
// (ock.go, softhsm-test/ocktoken.sh), so the same tests run against a second PKCS#11
// implementation; Opencryptoki gives that token to a test that wants it beside SoftHSM2.
package softhsmtest

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"appliance/internal/ci"
)

// Token facts shared with softhsm-test/mktoken.sh.
const (
	TokenLabel = "appliance"
	PIN        = "1234"
	SOPIN      = "5678"
)

// Env is one test binary's token and the shared test PKI.
type Env struct {
	Impl     string // ImplSoftHSM or ImplOpencryptoki: which PKCS#11 implementation Module is
	Module   string // path of libsofthsm2.so (or of the other implementation's module)
	Conf     string // SOFTHSM2_CONF of this token (also set in the process environment)
	TokenDir string
	PINFile  string // holds PIN, mode 0600
	PKI      string // directory made by mkpki.sh
}

var (
	once   sync.Once
	env    *Env
	envErr error
	tmp    string
)

// ModulePaths are where Debian and others install SoftHSM2's PKCS#11 module.
var ModulePaths = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// FindModule returns the SoftHSM2 module path, honouring SOFTHSM2_MODULE.
func FindModule() (string, bool) {
	if p := os.Getenv("SOFTHSM2_MODULE"); p != "" {
		_, err := os.Stat(p)
		return p, err == nil
	}
	p := firstPresent(ModulePaths)
	return p, p != ""
}

// firstPresent returns the first of paths that exists, or "".
func firstPresent(paths []string) string {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// SpyModulePaths are where Debian's opensc-pkcs11 installs OpenSC's pkcs11-spy, a module that
// logs every call on its way to the module PKCS11SPY names (to PKCS11SPY_OUTPUT).
var SpyModulePaths = []string{
	"/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so",
	"/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
	"/usr/lib/pkcs11/pkcs11-spy.so",
}

// SpyModule returns pkcs11-spy's path; without it the test is skipped (failed under CI).
func SpyModule(tb testing.TB) string {
	tb.Helper()
	p := firstPresent(SpyModulePaths)
	if p == "" {
		missingCI(tb, "pkcs11-spy.so not found; install the opensc-pkcs11 package")
	}
	return p
}

// RepoRoot is the top of the source tree, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Setup returns the token and PKI, making them on first use in this test binary. It skips the test
// when SoftHSM2 or openssl is missing, unless CI is set, where that is a failure.
//
// With APPLIANCE_TEST_TOKEN=opencryptoki the token is opencryptoki's software token instead (see
// Opencryptoki): the same tests then run against a second PKCS#11 implementation.
func Setup(tb testing.TB) *Env {
	tb.Helper()
	switch impl := Impl(); impl {
	case ImplSoftHSM:
	case ImplOpencryptoki:
		return Opencryptoki(tb)
	default:
		tb.Fatalf("softhsmtest: %s=%q: want %q or %q", ImplEnv, impl, ImplSoftHSM, ImplOpencryptoki)
	}
	mod, ok := FindModule()
	if !ok {
		missing(tb, "SoftHSM2 module (libsofthsm2.so) not found; install the softhsm2 package")
	}
	for _, tool := range []string{"openssl", "softhsm2-util"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing(tb, tool+" not found")
		}
	}
	once.Do(func() { env, envErr = setup(mod) })
	if envErr != nil {
		tb.Fatalf("softhsmtest: %v", envErr)
	}
	return env
}

func missing(tb testing.TB, why string) {
	tb.Helper()
	if ci.On() {
		tb.Fatalf("softhsmtest: %s (CI set: a missing HSM is a failure, not a skip)", why)
	}
	tb.Skipf("softhsmtest: %s", why)
}

// Cleanup removes this binary's token; call it from TestMain after m.Run.
func Cleanup() {
	if tmp != "" {
		os.RemoveAll(tmp)
	}
	ockCleanup()
}

func setup(mod string) (*Env, error) {
	root := RepoRoot()
	pki, err := cachedPKI(root)
	if err != nil {
		return nil, err
	}
	tmp, err = os.MkdirTemp("", "appliance-token-")
	if err != nil {
		return nil, err
	}
	tok := filepath.Join(tmp, "token")
	cmd := exec.Command("bash", filepath.Join(root, "softhsm-test", "mktoken.sh"), tok, pki)
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("failed to make token: %v: %s", err, out)
	}
	conf := filepath.Join(tok, "softhsm2.conf")
	if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
		return nil, err
	}
	return &Env{Impl: ImplSoftHSM, Module: mod, Conf: conf, TokenDir: filepath.Join(tok, "tokens"), PINFile: filepath.Join(tok, "pin"), PKI: pki}, nil
}

// cachedPKI makes the PKI once per version of mkpki.sh and reuses it. Making it in a temporary
// directory and renaming it into place keeps concurrent test binaries from seeing half of one.
func cachedPKI(root string) (string, error) {
	script := filepath.Join(root, "softhsm-test", "mkpki.sh")
	src, err := os.ReadFile(script)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(src)
	base := os.Getenv("APPLIANCE_TEST_CACHE")
	if base == "" {
		base = filepath.Join(os.TempDir(), "appliance-test-cache")
	}
	dir := filepath.Join(base, "pki-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "users.tsv")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	work, err := os.MkdirTemp(base, "making-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	cmd := exec.Command("bash", script, work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to make test PKI: %v: %s", err, out)
	}
	if err := os.Rename(work, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "users.tsv")); serr == nil {
			return dir, nil // another binary won the race
		}
		return "", err
	}
	return dir, nil
}

// File is the path of a file in the PKI directory, e.g. File("bob.pem").
func (e *Env) File(name string) string { return filepath.Join(e.PKI, name) }

// Cert parses NAME.pem.
func (e *Env) Cert(tb testing.TB, name string) *x509.Certificate {
	tb.Helper()
	block := readPEM(tb, e.File(name+".pem"))
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		tb.Fatalf("softhsmtest: parse %s: %v", name, err)
	}
	return c
}

// Key parses NAME.key (a software copy, for the test side only: decrypting what the appliance
// made, or acting as a client).
func (e *Env) Key(tb testing.TB, name string) crypto.Signer {
	tb.Helper()
	block := readPEM(tb, e.File(name+".key"))
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		tb.Fatalf("softhsmtest: parse key %s: %v", name, err)
	}
	return k.(crypto.Signer)
}

// Roots parses the root and intermediate CA certificates.
func (e *Env) Roots(tb testing.TB) (root, inter *x509.Certificate) {
	return e.Cert(tb, "root"), e.Cert(tb, "inter")
}

// Users lists the PKI's users as name -> address.
func (e *Env) Users(tb testing.TB) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(e.File("users.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, "\t")
		m[f[0]] = f[1]
	}
	return m
}

func readPEM(tb testing.TB, path string) *pem.Block {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("softhsmtest: %v", err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		tb.Fatalf("softhsmtest: no PEM in %s", path)
	}
	return block
}

// Card makes a SoftHSM2 token of its own, labelled label with PIN and SOPIN, in a directory the
// test removes, and returns the path of its softhsm2.conf. mechanisms, when not empty, is the
// conf's slots.mechanisms: the token then lists only those, the way a smartcard that can only sign
// does. SoftHSM2 reads SOFTHSM2_CONF once per process, so the token is for another process (a
// child test binary, `p11-kit server`, the daemon under test), not for this one.
func (e *Env) Card(tb testing.TB, label, mechanisms string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		tb.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	text := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))
	if mechanisms != "" {
		text += "slots.mechanisms = " + mechanisms + "\n"
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("softhsmtest: init token %q: %v: %s", label, err, out)
	}
	return conf
}
