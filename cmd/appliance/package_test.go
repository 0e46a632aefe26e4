package main

import (
	"appliance/internal/ci"
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
		ci.Skipf(t, "dpkg is missing: not a Debian system")
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

// TestContainerfile: deploy/Containerfile copies only what the repository has and runs serve
// with the configuration path the systemd unit and the package use. (No container builder runs
// in the test suite, so it is not built here.)
func TestContainerfile(t *testing.T) {
	root := softhsmtest.RepoRoot()
	b, err := os.ReadFile(filepath.Join(root, "deploy", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	unit, err := os.ReadFile(filepath.Join(root, "deploy", "systemd", "appliance.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--from") {
			continue
		}
		for _, src := range f[1 : len(f)-1] {
			if _, err := os.Stat(filepath.Join(root, src)); err != nil {
				t.Errorf("Containerfile copies %s: %v", src, err)
			}
		}
	}
	if !strings.Contains(string(b), `CMD ["serve", "-config", "/etc/appliance/appliance.toml"]`) ||
		!strings.Contains(string(unit), "serve -config /etc/appliance/appliance.toml") {
		t.Error("the Containerfile and the systemd unit do not run serve with the same configuration path")
	}
	if !strings.Contains(string(b), "go build -trimpath -o /out/appliance ./cmd/appliance") {
		t.Error("the Containerfile does not build ./cmd/appliance")
	}
}
