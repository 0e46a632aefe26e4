package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
	"appliance/internal/testconfig"
)

// pkcs11Objects lists the token's objects with OpenSC's pkcs11-tool: an outside view of what
// `appliance keys` did, so a bug in package hsm cannot confirm itself.
func pkcs11Objects(t *testing.T, env *softhsmtest.Env) string {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if ci.On() {
			t.Fatal("pkcs11-tool (opensc) is missing (CI set: a failure, not a skip)")
		}
		t.Skip("pkcs11-tool (opensc) is missing")
	}
	out, err := exec.Command("pkcs11-tool", "--module", env.Module, "--token-label", softhsmtest.TokenLabel,
		"--login", "--pin", softhsmtest.PIN, "--list-objects").CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool --list-objects: %v\n%s", err, out)
	}
	return string(out)
}

// objectsLabelled returns the kinds ("Private Key", "Public Key", "Certificate") of the objects
// pkcs11-tool lists with label.
func objectsLabelled(list, label string) []string {
	var kinds []string
	var kind string
	for _, line := range strings.Split(list, "\n") {
		if i := strings.Index(line, " Object;"); i > 0 && !strings.HasPrefix(line, " ") {
			kind = line[:i]
		}
		if strings.TrimSpace(line) == "label:      "+label || strings.TrimSpace(line) == "label: "+label ||
			strings.Join(strings.Fields(line), " ") == "label: "+label {
			kinds = append(kinds, kind)
		}
	}
	return kinds
}

func runKeysCmd(cfg string, args ...string) (string, string, error) {
	var stdout, stderr bytes.Buffer
	err := runKeys(append([]string{args[0], "-config", cfg}, args[1:]...), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestKeys drives `appliance keys` through a key's life on SoftHSM2: generate, CSR, issue (by the
// test CA, with openssl), import the certificate, list; each step cross-checked from outside.
func TestKeys(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfg, _ := certsConfig(t, env, "")
	dir := t.TempDir()
	uri := func(label string) string { return "pkcs11:token=appliance;object=" + label }

	t.Run("generate", func(t *testing.T) {
		tests := []struct {
			name, label, kind string
			wantErr           error
			usage             bool
		}{
			{"ok rsa2048", "k9-rsa", "rsa2048", nil, false},
			{"ok rsa3072", "k9-rsa3072", "rsa3072", nil, false},
			{"ok p256", "k9-ec", "p256", nil, false},
			{"fail label taken", "k9-rsa", "rsa2048", hsm.ErrKeyExists, false},
			{"fail unknown type", "k9-dsa", "dsa1024", nil, true},
			{"fail no label", "", "rsa2048", errUsage, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := []string{"generate", "-type", tt.kind}
				if tt.label != "" {
					args = append(args, "-label", tt.label)
				}
				out, _, err := runKeysCmd(cfg, args...)
				switch {
				case tt.wantErr != nil:
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					return
				case tt.usage:
					if err == nil {
						t.Fatal("no error")
					}
					return
				case err != nil:
					t.Fatal(err)
				}
				if !strings.Contains(out, uri(tt.label)) {
					t.Errorf("output %q does not name %s", out, uri(tt.label))
				}
			})
		}
		objs := pkcs11Objects(t, env)
		for _, label := range []string{"k9-rsa", "k9-rsa3072", "k9-ec"} {
			kinds := strings.Join(objectsLabelled(objs, label), ",")
			if !strings.Contains(kinds, "Private Key") || !strings.Contains(kinds, "Public Key") {
				t.Errorf("pkcs11-tool shows %q for %s, want a private and a public key\n%s", kinds, label, objs)
			}
		}
		if kinds := objectsLabelled(objs, "k9-dsa"); len(kinds) > 0 {
			t.Errorf("a refused generate left objects: %v", kinds)
		}
	})

	csrs := map[string]string{}
	t.Run("csr", func(t *testing.T) {
		tests := []struct {
			name, label, email string
			wantErr            error
		}{
			{"ok rsa", "k9-rsa", "zed@example.test", nil},
			{"ok ec", "k9-ec", "yan@example.test", nil},
			{"fail no such key", "k9-nope", "x@example.test", hsm.ErrKeyNotFound},
			{"fail no email", "k9-rsa", "", errUsage},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				args := []string{"csr", "-key", uri(tt.label)}
				if tt.email != "" {
					args = append(args, "-email", tt.email)
				}
				out, _, err := runKeysCmd(cfg, args...)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, tt.label+".csr")
				if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
					t.Fatal(err)
				}
				// openssl checks the signature the token made.
				if v := openssl(t, "req", "-verify", "-noout", "-in", path); !strings.Contains(v, "verify OK") {
					t.Fatalf("openssl req -verify: %s", v)
				}
				block, _ := pem.Decode([]byte(out))
				if block == nil || block.Type != "CERTIFICATE REQUEST" {
					t.Fatalf("not a PEM certificate request: %q", out)
				}
				req, err := x509.ParseCertificateRequest(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				if len(req.EmailAddresses) != 1 || req.EmailAddresses[0] != tt.email || req.Subject.CommonName != tt.email {
					t.Errorf("request names %v / %q, want %s", req.EmailAddresses, req.Subject.CommonName, tt.email)
				}
				csrs[tt.label] = path
			})
		}
	})

	t.Run("import-cert", func(t *testing.T) {
		if csrs["k9-rsa"] == "" {
			ci.Skipf(t, "no CSR")
		}
		ext := filepath.Join(dir, "ext.cnf")
		os.WriteFile(ext, []byte("subjectAltName=email:zed@example.test\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\n"), 0o600)
		certPath := filepath.Join(dir, "k9-rsa.pem")
		openssl(t, "x509", "-req", "-in", csrs["k9-rsa"], "-CA", env.File("inter.pem"), "-CAkey", env.File("inter.key"),
			"-set_serial", "0x9009", "-days", "30", "-sha256", "-extfile", ext, "-out", certPath)

		tests := []struct {
			name, label, cert string
			wantErr           error
		}{
			{"ok issued for the key", "k9-rsa", certPath, nil},
			{"fail someone else's certificate", "k9-ec", env.File("bob.pem"), hsm.ErrCertificateMismatch},
			{"fail not a certificate", "k9-rsa", csrs["k9-rsa"], nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				out, _, err := runKeysCmd(cfg, "import-cert", "-key", uri(tt.label), tt.cert)
				if strings.HasPrefix(tt.name, "fail") {
					if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
						t.Fatalf("err = %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(out, "serial 0x9009") {
					t.Errorf("output %q", out)
				}
			})
		}
		objs := pkcs11Objects(t, env)
		if kinds := strings.Join(objectsLabelled(objs, "k9-rsa"), ","); !strings.Contains(kinds, "Certificate") {
			t.Errorf("pkcs11-tool shows %q for k9-rsa, want a certificate too\n%s", kinds, objs)
		}
		if kinds := strings.Join(objectsLabelled(objs, "k9-ec"), ","); strings.Contains(kinds, "Certificate") {
			t.Errorf("a refused import left a certificate for k9-ec")
		}
	})

	t.Run("list", func(t *testing.T) {
		out, _, err := runKeysCmd(cfg, "list")
		if err != nil {
			t.Fatal(err)
		}
		lines := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			// pkcs11:token=appliance;object=LABEL;id=...;type=private
			u, _, _ := strings.Cut(l, "\t")
			if i := strings.Index(u, ";id="); i > 0 {
				u = u[:i]
			}
			lines[u] = l
		}
		tests := []struct {
			name, uri, want, notWant string
		}{
			{"ok with certificate", uri("k9-rsa"), `cert="CN=zed@example.test`, ""},
			{"ok without certificate", uri("k9-ec"), "id=", "cert="},
			{"ok mktoken key", uri("alice"), "id=01", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l, ok := lines[tt.uri]
				if !ok {
					t.Fatalf("%s not listed:\n%s", tt.uri, out)
				}
				if !strings.Contains(l, tt.want) || (tt.notWant != "" && strings.Contains(l, tt.notWant)) {
					t.Fatalf("line %q, want %q and not %q", l, tt.want, tt.notWant)
				}
			})
		}
	})
}

// tokensConfigFile writes a configuration with the test token ("hsm") and the card ("card", with
// cardRoles) as [[token]] entries.
func tokensConfigFile(t *testing.T, env *softhsmtest.Env, card *softhsmtest.Remote, cardRoles ...string) string {
	t.Helper()
	dir := t.TempDir()
	c := testconfig.New(env, dir)
	c.Module, c.Token, c.PINFile = "", "", ""
	c.HSM = []string{"max_sessions = 4", `content_token = "hsm"`}
	c.Tokens = []testconfig.Token{
		{Name: "hsm", Module: env.Module, URI: "pkcs11:token=appliance", PINFile: env.PINFile, Roles: []string{"sign", "content"}},
		{Name: "card", Module: card.Module, URI: "pkcs11:token=card", PINFile: env.PINFile, Roles: cardRoles},
	}
	return c.Write(t, dir)
}

// `keys` works on the token -token names, and `keys mechanisms` shows what a token can do and
// what its roles lack.
func TestKeysTokens(t *testing.T) {
	env := softhsmtest.Setup(t)
	card := startCard(t, env)
	cfg := tokensConfigFile(t, env, card, "sign")

	if _, _, err := runKeysCmd(cfg, "list"); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "-token (hsm, card)") {
		t.Errorf("list without -token on two tokens: %v", err)
	}
	if _, _, err := runKeysCmd(cfg, "list", "-token", "nope"); !errors.Is(err, errUsage) {
		t.Errorf("list -token nope: %v", err)
	}

	out, _, err := runKeysCmd(cfg, "mechanisms", "-token", "card")
	if err != nil {
		t.Fatalf("mechanisms -token card: %v", err)
	}
	if !strings.Contains(out, `token "card" (label "card"`) || !strings.Contains(out, "CKM_RSA_PKCS ") ||
		strings.Contains(out, "CKM_AES_KEY_GEN") || !strings.Contains(out, "roles sign: ok") {
		t.Errorf("mechanisms of the card:\n%s", out)
	}
	out, _, err = runKeysCmd(cfg, "mechanisms", "-token", "hsm")
	if err != nil {
		t.Fatalf("mechanisms -token hsm: %v", err)
	}
	if !regexp.MustCompile(`(?m)^CKM_AES_KEY_GEN .*generate.*\(role content\)$`).MatchString(out) || !strings.Contains(out, "roles sign,content: ok") {
		t.Errorf("mechanisms of the full token:\n%s", out)
	}

	out, _, err = runKeysCmd(cfg, "generate", "-token", "card", "-label", "dave")
	if err != nil || !strings.Contains(out, "pkcs11:token=card;object=dave") {
		t.Fatalf("generate on the card: %q, %v", out, err)
	}
	out, _, err = runKeysCmd(cfg, "list", "-token", "card")
	if err != nil || !strings.Contains(out, "object=carol") || !strings.Contains(out, "object=dave") || strings.Contains(out, "object=alice") {
		t.Errorf("list -token card: %q, %v", out, err)
	}
	out, _, err = runKeysCmd(cfg, "list", "-token", "hsm")
	if err != nil || strings.Contains(out, "object=dave") || !strings.Contains(out, "object=alice") {
		t.Errorf("list -token hsm: %q, %v", out, err)
	}

	// A card configured for a role it cannot do: the key commands refuse it like serve does,
	// naming what is missing, and mechanisms shows it.
	bad := tokensConfigFile(t, env, card, "sign", "content")
	if _, _, err := runKeysCmd(bad, "list", "-token", "card"); !errors.Is(err, hsm.ErrMechanism) {
		t.Errorf("list on a card with role content: %v", err)
	}
	out, _, err = runKeysCmd(bad, "mechanisms", "-token", "card")
	if want := `missing: failed to check token mechanisms: mechanism not supported by the token: token "card" has no CKM_AES_KEY_GEN, needed for role content`; err != nil || !strings.Contains(out, want) {
		t.Errorf("mechanisms of a card with role content: %v\n%s\nwant %q", err, out, want)
	}
}
