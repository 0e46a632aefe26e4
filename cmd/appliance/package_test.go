package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

// TestPackage builds the Debian package with scripts/package.sh, whose own checks (dpkg-deb
// --info and --contents, the extracted binary's version, help config and check-config) must
// pass, and looks at the result from outside once more.
func TestPackage(t *testing.T) {
	// dpkg (essential on Debian) brings dpkg-deb, which package.sh and dpkg --info use.
	if _, err := exec.LookPath("dpkg"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dpkg is missing (CI=true: a failure, not a skip)")
		}
		t.Skip("dpkg is missing: not a Debian system")
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join(softhsmtest.RepoRoot(), "scripts", "package.sh"), out)
	cmd.Env = append(os.Environ(), "PKG_VERSION=9.9.9~test")
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("package.sh: %v\n%s", err, log)
	}
	deb := filepath.Join(out, "appliance_9.9.9~test_"+strings.TrimSpace(goEnv(t, "GOARCH"))+".deb")
	conffiles, err := exec.Command("dpkg", "--info", deb, "conffiles").Output()
	if err != nil || strings.TrimSpace(string(conffiles)) != "/etc/appliance/appliance.toml" {
		t.Fatalf("conffiles %q: %v\n%s", conffiles, err, log)
	}
	if !strings.Contains(string(log), "package: ok: "+deb) {
		t.Fatalf("package.sh did not pass its checks:\n%s", log)
	}
}

func goEnv(t *testing.T, key string) string {
	t.Helper()
	out, err := exec.Command("go", "env", key).Output()
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}
