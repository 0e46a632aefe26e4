package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"-version"}} {
		t.Run("ok "+args[0], func(t *testing.T) {
			r := runBin(t, nil, "", nil, args...)
			if r.code != 0 {
				t.Fatal(r)
			}
			for _, want := range []string{"appliance ", "revision  ", "time      ", "go        " + runtime.Version()} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("no %q in\n%s", want, r)
				}
			}
			// The revision is the one the toolchain stamped, as `go version -m` reads it.
			m, err := exec.Command("go", "version", "-m", applianceBin(t)).Output()
			if err != nil {
				t.Fatal(err)
			}
			rev := "unknown"
			for _, l := range strings.Split(string(m), "\n") {
				if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[1], "vcs.revision=") {
					rev = strings.TrimPrefix(f[1], "vcs.revision=")
				}
			}
			if !strings.Contains(r.stdout, "revision  "+rev) {
				t.Errorf("revision is not %s:\n%s", rev, r)
			}
		})
	}
	t.Run("fail extra argument", func(t *testing.T) {
		r := runBin(t, nil, "", nil, "version", "now")
		if r.code != 2 || !strings.Contains(r.stderr, `unexpected argument "now"`) || !strings.Contains(r.stderr, "-config") {
			t.Fatal(r)
		}
	})
}

func TestVersionModule(t *testing.T) {
	env := softhsmtest.Setup(t)
	cfg, _ := certsConfig(t, env, "")
	t.Run("ok token", func(t *testing.T) {
		r := runBin(t, env, "", nil, "version", "-config", cfg)
		if r.code != 0 {
			t.Fatal(r)
		}
		for _, want := range []string{"module    " + env.Module, "library   ", "SoftHSM", `token     "appliance": `, "serial "} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("no %q in\n%s", want, r)
			}
		}
	})
	t.Run("fail no such token", func(t *testing.T) {
		data, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		other := filepath.Join(filepath.Dir(cfg), "other.toml")
		if err := os.WriteFile(other, []byte(strings.NewReplacer(`token = "appliance"`, `token = "nope"`, "token=appliance", "token=nope").Replace(string(data))), 0o600); err != nil {
			t.Fatal(err)
		}
		r := runBin(t, env, "", nil, "version", "-config", other)
		if r.code != 1 || !strings.Contains(r.stderr, `hsm.token "nope": no token with this label`) || !strings.Contains(r.stdout, "library   ") {
			t.Fatal(r)
		}
	})
}
