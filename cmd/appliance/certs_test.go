package main

import (
	"bytes"
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/directory"
	"appliance/internal/softhsmtest"
	"appliance/internal/testconfig"
	"appliance/smime"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	cleanupBin()
	os.Exit(code)
}

// certsConfig writes a configuration whose folder is a copy of the test PKI's, so learn can
// write into it.
func certsConfig(t *testing.T, env *softhsmtest.Env, extra string) (cfgPath, certs string) {
	t.Helper()
	dir := t.TempDir()
	certs = filepath.Join(dir, "certs")
	if out, err := exec.Command("cp", "-r", env.File("certs"), certs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	c := testconfig.New(env, dir)
	c.Certs, c.Extra = certs, extra
	return c.Write(t, dir), certs
}

func oliviaSigned(t *testing.T, env *softhsmtest.Env) string {
	t.Helper()
	entity := "Content-Type: text/plain\r\n\r\nhello\r\n"
	sig, err := cms.Sign(env.Key(t, "olivia"), []*x509.Certificate{env.Cert(t, "olivia"), env.Cert(t, "inter")}, []byte(entity),
		cms.SignOptions{Detached: true, Capabilities: []cms.AlgorithmIdentifier{{Algorithm: oid.AES256GCM}, {Algorithm: oid.AES256CBC}}})
	if err != nil {
		t.Fatal(err)
	}
	msg := append([]byte("From: olivia@example.org\r\nTo: alice@example.test\r\nMIME-Version: 1.0\r\n"),
		smime.SignedEntity([]byte(entity), sig, "sha-256")...)
	path := filepath.Join(t.TempDir(), "olivia.eml")
	if err := os.WriteFile(path, msg, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCerts(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfg, _ := certsConfig(t, env, "")
	pinned, _ := certsConfig(t, env, "[[policy.domain]]\ndomain = \"example.org\"\nprofile = \"compat\"\n")
	learnt, certs := certsConfig(t, env, "")
	eml := oliviaSigned(t, env)

	tests := []struct {
		name    string
		args    []string
		wantErr error
		want    []string // substrings of stdout
	}{
		{name: "ok list", args: []string{"list", "-config", cfg},
			want: []string{"sources: folder", "bob@example.test\t", "grace@example.test\t", "refused: certificate has expired"}},
		{name: "ok show", args: []string{"show", "bob@example.test", "-config", cfg},
			want: []string{"certificates: 1 usable, 0 refused", "  use \"", "from folder", "profile: compat (policy.profile, nothing learnt)"}},
		{name: "ok show flags first", args: []string{"-config", cfg, "show", "heidi@example.test"},
			want: []string{"certificates: 2 usable"}},
		{name: "ok show refused", args: []string{"show", "ivan@example.test", "-config", cfg},
			want: []string{"0 usable, 1 refused", "because keyUsage lacks keyEncipherment", "profile: none (policy.missing_cert = \"reject\" applies)"}},
		{name: "ok check", args: []string{"check", "carol@example.test", "-config", cfg},
			want: []string{"carol@example.test: ok, 1 certificate(s)", "profile compat"}},
		{name: "fail check expired", args: []string{"check", "grace@example.test", "-config", cfg},
			wantErr: directory.ErrNoUsableCertificate, want: []string{"no usable certificate (certificate has expired"}},
		{name: "fail check unknown", args: []string{"check", "nobody@example.test", "-config", cfg},
			wantErr: directory.ErrNoUsableCertificate, want: []string{"no usable certificate (none found)"}},
		{name: "ok learn", args: []string{"learn", eml, "-config", learnt},
			want: []string{"learnt olivia@example.org", "announced: AES-256-GCM, AES-256-CBC", "profile for olivia@example.org: modern (learnt"}},
		{name: "ok show after learn", args: []string{"show", "olivia@example.org", "-config", learnt},
			want: []string{"profile: modern (learnt", "learnt/olivia@example.org-"}},
		{name: "ok domain policy pins the profile", args: []string{"learn", eml, "-config", pinned},
			want: []string{"profile for olivia@example.org: compat (pinned by [[policy.domain]] \"example.org\")"}},
		{name: "fail learn unsigned", args: []string{"learn", env.File("bob.pem"), "-config", cfg}},
		{name: "fail unknown subcommand", args: []string{"frob", "-config", cfg}, wantErr: errUsage},
		{name: "fail show without address", args: []string{"show", "-config", cfg}, wantErr: errUsage},
		{name: "fail no config", args: []string{"list"}, wantErr: errUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runCerts(tt.args, &stdout, &stderr)
			switch {
			case strings.HasPrefix(tt.name, "ok") && err != nil:
				t.Fatalf("err = %v\n%s", err, stdout.String())
			case strings.HasPrefix(tt.name, "fail") && err == nil:
				t.Fatalf("no error\n%s", stdout.String())
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, stdout.String())
				}
			}
		})
	}
	if m, _ := filepath.Glob(filepath.Join(certs, "learnt", "*.caps.json")); len(m) != 1 {
		t.Errorf("learnt sidecars: %v", m)
	}
}
