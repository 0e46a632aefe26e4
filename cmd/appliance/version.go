package main

// `appliance version` (and `appliance -version`): what was built, from the build information the
// Go toolchain embeds, and with -config the PKCS#11 module and token the configuration names, as
// the module itself reports them (C_GetInfo, C_GetTokenInfo; no login, so no PIN is read).

import (
	"appliance/hsm"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// packageVersion is set by scripts/package.sh (-ldflags -X) to the Debian package's version.
var packageVersion string

// buildVersion is the build information in a few lines: module version, VCS revision and time,
// Go version.
func buildVersion() []string {
	version, revision, at, modified := "(devel)", "unknown", "unknown", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		if packageVersion != "" {
			version = packageVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = " (modified)"
				}
			}
		}
	}
	return []string{
		"appliance " + version,
		"revision  " + revision + modified,
		"time      " + at,
		"go        " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
	}
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "[-config FILE]", stderr)
	cfgPath := fs.String("config", "", "also show the PKCS#11 module and token this configuration names")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fs, "unexpected argument %q", fs.Arg(0))
	}
	for _, l := range buildVersion() {
		fmt.Fprintln(stdout, l)
	}
	if *cfgPath == "" {
		return nil
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	lines, err := hsm.ModuleInfo(cfg.HSM.Module, cfg.HSM.Token)
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return err
}
