package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/config"
	"appliance/internal/softhsmtest"
)

// emptySoftHSM is a SoftHSM2 configuration with no token yet, for init to initialise one in.
func emptySoftHSM(t *testing.T) (conf string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tokens"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf = filepath.Join(dir, "softhsm2.conf")
	writeTestFile(t, conf, []byte(fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))))
	return conf
}

// issue signs a CSR with the test PKI's intermediate CA, for addr, as a CA would.
func issue(t *testing.T, env *softhsmtest.Env, csr, addr string) string {
	t.Helper()
	dir := t.TempDir()
	ext := filepath.Join(dir, "ext.cnf")
	writeTestFile(t, ext, []byte("subjectAltName=email:"+addr+"\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\n"))
	leaf := filepath.Join(dir, "leaf.pem")
	openssl(t, "x509", "-req", "-in", csr, "-CA", env.File("inter.pem"), "-CAkey", env.File("inter.key"),
		"-set_serial", "0x7001", "-days", "90", "-sha256", "-extfile", ext, "-out", leaf)
	leafPEM, err := os.ReadFile(leaf)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := os.ReadFile(env.File("inter.pem"))
	if err != nil {
		t.Fatal(err)
	}
	chain := filepath.Join(dir, "chain.pem")
	writeTestFile(t, chain, append(leafPEM, inter...))
	return chain
}

// TestInitBatch drives `appliance init -batch` on SoftHSM2 from an empty token directory: the
// first run initialises the token, makes the key and CSR and writes the config; after the CA
// signs, the second run imports the certificate and runs check-config -connect, which passes.
func TestInitBatch(t *testing.T) {
	env := softhsmtest.Setup(t) // the test PKI acts as the CA
	conf := emptySoftHSM(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "etc", "appliance.toml")
	so := filepath.Join(dir, "so-pin")
	writeTestFile(t, so, []byte("5678\n"))
	hop := fakeNextHop(t, nil)
	base := []string{"init", "-batch", "-config", cfg, "-module", env.Module, "-token", "prod",
		"-sender", "alice@example.test", "-next-hop", hop, "-listen", "127.0.0.1:0",
		"-certs", env.File("certs"), "-roots", env.File("roots.pem"), "-spool", filepath.Join(dir, "spool")}
	hsmEnv := []string{"SOFTHSM2_CONF=" + conf}

	r := runBin(t, nil, "", hsmEnv, append(base, "-init-token", "-so-pin-file", so)...)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{`initialised token "prod"`, "wrote a new random user PIN", "generated rsa2048 key pkcs11:token=prod;object=alice",
		"senders/alice@example.test.csr", "wrote " + cfg, "next: have your CA sign"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("first run lacks %q\n%s", want, r)
		}
	}
	if st, err := os.Stat(filepath.Join(dir, "etc", "pin")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("pin file: %v %v", st, err)
	}
	written, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(written), "# ") {
		t.Error("the config has no comments")
	}
	if _, err := config.Parse(written); err != nil {
		t.Fatalf("the written config does not parse: %v\n%s", err, written)
	}

	csr := filepath.Join(dir, "etc", "senders", "alice@example.test.csr")
	chain := issue(t, env, csr, "alice@example.test")
	csrBefore, _ := os.ReadFile(csr)
	r = runBin(t, nil, "", hsmEnv, append(base, "-cert", "alice@example.test="+chain)...)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"using the key pkcs11:token=prod;object=alice already on the token", "kept " + csr + " as it is",
		"imported \"CN=alice@example.test\"", "kept " + cfg + " as it is", "ok    sender alice@example.test certificate: ",
		"ok    next hop " + hop, cfg + ": ok"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("second run lacks %q\n%s", want, r)
		}
	}
	if csrAfter, _ := os.ReadFile(csr); string(csrAfter) != string(csrBefore) {
		t.Error("the second run overwrote the CSR")
	}
	// The token holds the certificate beside the key, as pkcs11-tool sees it.
	if out, err := exec.Command("pkcs11-tool", "--module", env.Module, "--token-label", "prod", "--list-objects").CombinedOutput(); err == nil {
		if !strings.Contains(string(out), "Certificate Object") {
			t.Errorf("no certificate on the token:\n%s", out)
		}
	}

	t.Run("fail someone else's certificate", func(t *testing.T) {
		r := runBin(t, nil, "", hsmEnv, append(base, "-cert", "alice@example.test="+env.File("bob.chain.pem"))...)
		if r.code != 1 || !strings.Contains(r.stderr, "names bob@example.test, not alice@example.test") {
			t.Fatal(r)
		}
	})
	t.Run("fail no token without -init-token", func(t *testing.T) {
		args := append([]string{}, base...)
		args[3] = filepath.Join(t.TempDir(), "x.toml")
		args[7] = "other"
		r := runBin(t, nil, "", hsmEnv, args...)
		if r.code != 1 || !strings.Contains(r.stderr, `no token "other"`) || !strings.Contains(r.stderr, "-init-token") {
			t.Fatal(r)
		}
	})
}

// TestInitInteractive answers init's questions from a script on stdin: the module by number,
// a new token, one sender, and "no" to overwriting a config that is already there.
func TestInitInteractive(t *testing.T) {
	env := softhsmtest.Setup(t)
	conf := emptySoftHSM(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "appliance.toml")
	writeTestFile(t, cfg, []byte("# mine\n"))
	so := filepath.Join(dir, "so-pin")
	writeTestFile(t, so, []byte("5678\n"))
	answers := strings.Join([]string{
		env.Module,         // module
		"interactive",      // token label
		"",                 // user PIN file: the default beside the config
		"y",                // initialise it
		so,                 // SO PIN file
		"bob@example.test", // senders
		"",                 // no certificate yet
		"127.0.0.1:2526",   // next hop
		"",                 // listener
		env.File("certs"),  // certificates
		env.File("roots.pem"),
		filepath.Join(dir, "spool"),
		"n", // do not overwrite the config
	}, "\n") + "\n"
	r := runBin(t, nil, answers, []string{"SOFTHSM2_CONF=" + conf}, "init", "-config", cfg)
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"PKCS#11 modules found:", "token label [appliance]: ", `no token "interactive": initialise one on a free slot? (y/N)`,
		`initialised token "interactive"`, "generated rsa2048 key pkcs11:token=interactive;object=bob", "exists; overwrite it? (y/N)", "kept " + cfg + " as it is"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q\n%s", want, r)
		}
	}
	if b, _ := os.ReadFile(cfg); string(b) != "# mine\n" {
		t.Fatalf("the existing config was overwritten:\n%s", b)
	}
}
