package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

const sealMsg = "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: plan\r\n\r\nsee you\r\n"

func readManifest(t *testing.T, dir string) []manifestEntry {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m []manifestEntry
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("manifest.json: %v\n%s", err, b)
	}
	return m
}

// TestSealBinary drives `appliance seal` through the binary: exit statuses, the manifest's
// packages and refusals, the output directory rules and the checks made before the token.
func TestSealBinary(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfg, _ := certsConfig(t, env, "")
	seal := func(t *testing.T, msg, out string, extra ...string) binResult {
		t.Helper()
		args := append([]string{"seal", "-config", cfg, "-from", "alice@example.test", "-out", out}, extra...)
		for try := 1; ; try++ {
			r := runBin(t, env, msg, nil, args...)
			// SoftHSM2 rewrites the token file on login; another process may trip over it.
			if try < 3 && r.code == 1 && strings.Contains(r.stderr, "CKR_") {
				continue
			}
			return r
		}
	}

	t.Run("ok every recipient", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		r := seal(t, sealMsg, out, "-rcpt", "bob@example.test", "-rcpt", "carol@example.test")
		if r.code != 0 {
			t.Fatal(r)
		}
		m := readManifest(t, out)
		// carol is not in the header: a hidden recipient with a package of her own.
		if len(m) != 2 || m[0].File != "001.eml" || m[1].File != "002.eml" || m[0].Refused != nil || m[1].Refused != nil {
			t.Fatalf("manifest %+v", m)
		}
	})

	t.Run("fail some refused exit 3", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		// grace's only certificate expired; nobody has none.
		r := seal(t, sealMsg, out, "-rcpt", "bob@example.test", "-rcpt", "grace@example.test", "-rcpt", "nobody@example.test")
		if r.code != exitRefused {
			t.Fatalf("want exit %d\n%s", exitRefused, r)
		}
		if !strings.Contains(r.stderr, "refused <grace@example.test>") || !strings.Contains(r.stderr, "2 of 3 recipient(s) got no package") {
			t.Fatal(r)
		}
		var files, refused []string
		for _, e := range readManifest(t, out) {
			switch {
			case e.Refused != nil:
				if e.File != "" || e.Refused.Status == "" || e.Refused.Reason == "" {
					t.Errorf("refusal entry %+v", e)
				}
				refused = append(refused, e.RcptTo...)
			default:
				files = append(files, e.File)
			}
		}
		sort.Strings(refused)
		if strings.Join(files, ",") != "001.eml" || strings.Join(refused, ",") != "grace@example.test,nobody@example.test" {
			t.Fatalf("files %v, refused %v", files, refused)
		}
	})

	t.Run("fail non-empty out without force", func(t *testing.T) {
		out := t.TempDir()
		stale := filepath.Join(out, "009.eml")
		if err := os.WriteFile(stale, []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := seal(t, sealMsg, out, "-rcpt", "bob@example.test")
		if r.code != 1 || !strings.Contains(r.stderr, "is not empty") || !strings.Contains(r.stderr, "-force") {
			t.Fatal(r)
		}
		if r := seal(t, sealMsg, out, "-rcpt", "bob@example.test", "-force"); r.code != 0 {
			t.Fatal(r)
		}
		if _, err := os.Stat(stale); !os.IsNotExist(err) {
			t.Fatalf("-force left the earlier run's 009.eml beside the new packages (%v)", err)
		}
		if m := readManifest(t, out); len(m) != 1 || m[0].File != "001.eml" {
			t.Fatalf("manifest %+v", m)
		}
	})

	t.Run("fail force keeps foreign files", func(t *testing.T) {
		out := t.TempDir()
		if err := os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := seal(t, sealMsg, out, "-rcpt", "bob@example.test", "-force")
		if r.code != 1 || !strings.Contains(r.stderr, `holds "notes.txt"`) {
			t.Fatal(r)
		}
	})

	t.Run("fail empty message", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		r := seal(t, "\r\n", out, "-rcpt", "bob@example.test")
		if r.code != 1 || !strings.Contains(r.stderr, "empty message") {
			t.Fatal(r)
		}
		if _, err := os.Stat(out); !os.IsNotExist(err) {
			t.Fatal("a refused run made the output directory")
		}
	})

	t.Run("fail From not covered by the certificate", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "out")
		msg := strings.Replace(sealMsg, "From: alice@example.test", "From: Boss <ceo@example.test>", 1)
		r := seal(t, msg, out, "-rcpt", "bob@example.test")
		if r.code != 1 || !strings.Contains(r.stderr, "<ceo@example.test>, which the certificate of sender \"alice@example.test\" does not cover") ||
			!strings.Contains(r.stderr, "alice@example.test") {
			t.Fatal(r)
		}
	})

	t.Run("fail missing rcpt shows usage", func(t *testing.T) {
		r := runBin(t, env, sealMsg, nil, "seal", "-config", cfg, "-from", "alice@example.test", "-out", t.TempDir())
		if r.code != 2 || !strings.Contains(r.stderr, "missing -rcpt ADDR") || !strings.Contains(r.stderr, "usage: appliance seal") ||
			!strings.Contains(r.stderr, "-force") {
			t.Fatal(r)
		}
	})

	t.Run("ok control characters escaped", func(t *testing.T) {
		r := runBin(t, env, sealMsg, nil, "seal", "-config", cfg, "-from", "alice@example.test\x1b[31m", "-rcpt", "bob@example.test", "-out", t.TempDir())
		if r.code != 1 || strings.Contains(r.stderr, "\x1b") || !strings.Contains(r.stderr, `\x1b[31m`) {
			t.Fatal(r)
		}
	})
}
