package main

// `appliance version` (and `appliance -version`): what was built, from the build information the
// Go toolchain embeds, and with -config the PKCS#11 module and token the configuration names, as
// the module itself reports them (C_GetInfo, C_GetTokenInfo; no login, so no PIN is read).

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/miekg/pkcs11"
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
	lines, err := moduleInfo(cfg.HSM.Module, cfg.HSM.Token)
	for _, l := range lines {
		fmt.Fprintln(stdout, l)
	}
	return err
}

// moduleInfo loads module and describes it and the token labelled label.
func moduleInfo(module, label string) ([]string, error) {
	p := pkcs11.New(module)
	if p == nil {
		return nil, fmt.Errorf("hsm.module %q: cannot be loaded", module)
	}
	defer p.Destroy()
	if err := p.Initialize(); err != nil {
		return nil, fmt.Errorf("hsm.module %q: C_Initialize: %w", module, err)
	}
	defer p.Finalize()
	info, err := p.GetInfo()
	if err != nil {
		return nil, fmt.Errorf("hsm.module %q: C_GetInfo: %w", module, err)
	}
	lines := []string{
		"module    " + module,
		fmt.Sprintf("library   %s %d.%d (%s), Cryptoki %d.%d", strings.TrimSpace(info.LibraryDescription),
			info.LibraryVersion.Major, info.LibraryVersion.Minor, strings.TrimSpace(info.ManufacturerID),
			info.CryptokiVersion.Major, info.CryptokiVersion.Minor),
	}
	slots, err := p.GetSlotList(true)
	if err != nil {
		return lines, fmt.Errorf("hsm.module %q: C_GetSlotList: %w", module, err)
	}
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil || strings.TrimSpace(ti.Label) != label {
			continue
		}
		return append(lines, fmt.Sprintf("token     %q: %s %s, serial %s, firmware %d.%d", label,
			strings.TrimSpace(ti.ManufacturerID), strings.TrimSpace(ti.Model), strings.TrimSpace(ti.SerialNumber),
			ti.FirmwareVersion.Major, ti.FirmwareVersion.Minor)), nil
	}
	return lines, fmt.Errorf("hsm.token %q: no token with this label in %s (%d token(s) present)", label, module, len(slots))
}
