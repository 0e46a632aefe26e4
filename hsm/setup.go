package hsm

// Setting a token up, for `appliance init`, `keys` and `version`: which PKCS#11 modules are
// installed, which tokens a module shows, initialising a token on a free slot, describing a
// module and token without logging in, naming a sender's key, and a certificate request signed
// on the token.

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/miekg/pkcs11"
)

// moduleGlobs are where Debian and others install PKCS#11 modules: SoftHSM2, OpenSC, p11-kit's
// proxy and the p11-kit module directory.
var moduleGlobs = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/*/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib/*/opensc-pkcs11.so",
	"/usr/lib/*/pkcs11/*.so",
	"/usr/lib/*/p11-kit-proxy.so",
}

// FindModules returns the installed PKCS#11 modules, each once (symbolic links resolved), in
// the order of moduleGlobs.
func FindModules() []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range moduleGlobs {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			real, err := filepath.EvalSymlinks(m)
			if err != nil || seen[real] {
				continue
			}
			seen[real] = true
			out = append(out, m)
		}
	}
	return out
}

// ListTokens returns the labels of the initialised tokens module shows.
func ListTokens(module string) ([]string, error) {
	var labels []string
	err := withModule(module, func(ctx *pkcs11.Ctx) error {
		slots, err := ctx.GetSlotList(true)
		if err != nil {
			return fmt.Errorf("C_GetSlotList: %w", err)
		}
		for _, s := range slots {
			ti, err := ctx.GetTokenInfo(s)
			if err == nil && ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
				labels = append(labels, strings.TrimSpace(ti.Label))
			}
		}
		return nil
	})
	return labels, err
}

func withModule(module string, f func(*pkcs11.Ctx) error) error {
	ctx := pkcs11.New(module)
	if ctx == nil {
		return fmt.Errorf("PKCS#11 module %q cannot be loaded", module)
	}
	defer ctx.Destroy()
	if err := ctx.Initialize(); err != nil {
		return fmt.Errorf("PKCS#11 module %q: C_Initialize: %w", module, err)
	}
	defer ctx.Finalize()
	return f(ctx)
}

// InitToken initialises a token labelled label on the first free slot of module with the
// security officer PIN so, and sets its user PIN to pin.
func InitToken(module, label, so, pin string) error {
	return withModule(module, func(ctx *pkcs11.Ctx) error {
		slots, err := ctx.GetSlotList(true)
		if err != nil {
			return fmt.Errorf("C_GetSlotList: %w", err)
		}
		for _, s := range slots {
			ti, err := ctx.GetTokenInfo(s)
			if err != nil || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
				continue
			}
			if err := ctx.InitToken(s, so, label); err != nil {
				return fmt.Errorf("C_InitToken: %w", err)
			}
			// Some modules (SoftHSM2) move an initialised token to a new slot.
			slot, err := findSlot(ctx, label)
			if err != nil {
				return err
			}
			sh, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
			if err != nil {
				return fmt.Errorf("C_OpenSession: %w", err)
			}
			defer ctx.CloseSession(sh)
			if err := ctx.Login(sh, pkcs11.CKU_SO, so); err != nil {
				return fmt.Errorf("C_Login as SO: %w", err)
			}
			defer ctx.Logout(sh)
			if err := ctx.InitPIN(sh, pin); err != nil {
				return fmt.Errorf("C_InitPIN: %w", err)
			}
			return nil
		}
		return fmt.Errorf("no free slot on %s to initialise a token in", module)
	})
}

func findSlot(ctx *pkcs11.Ctx, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("C_GetSlotList: %w", err)
	}
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && strings.TrimSpace(ti.Label) == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("token %q not found after C_InitToken", label)
}

// ModuleInfo loads module and describes it and the token labelled label (C_GetInfo,
// C_GetTokenInfo; no login): a line for the module, one for the library and, when the token is
// there, one for the token.
func ModuleInfo(module, label string) ([]string, error) {
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

var labelUnsafe = regexp.MustCompile(`[^a-z0-9._-]+`)

// KeyLabel is the token object label for addr's key: its local part, with the domain added when
// two senders share one (used records the labels given so far).
func KeyLabel(addr string, used map[string]bool) string {
	local, domain, _ := strings.Cut(strings.ToLower(addr), "@")
	l := labelUnsafe.ReplaceAllString(local, "-")
	if used[l] {
		l = labelUnsafe.ReplaceAllString(local+"-"+domain, "-")
	}
	used[l] = true
	return l
}

// CertificateRequest is a PKCS#10 request in PEM for email (its subjectAltName) with common name
// cn, signed by signer (a key on the token).
func CertificateRequest(signer crypto.Signer, cn, email string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{email}}, signer)
	if err != nil {
		return nil, fmt.Errorf("failed to make certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseRoles is the union of the roles named in names ("sign", "content").
func ParseRoles(names []string) (Roles, error) {
	var roles Roles
	for _, r := range names {
		x, err := ParseRole(r)
		if err != nil {
			return 0, err
		}
		roles |= x
	}
	return roles, nil
}

// MechanismReport describes the token t (configured as name, for roles) and lists its
// mechanisms, one a line, marking what its roles need, and ends with what it lacks for them.
func MechanismReport(t *Token, name string, roles []string) ([]string, error) {
	ms, err := t.Mechanisms()
	if err != nil {
		return nil, err
	}
	info, err := t.Info()
	if err != nil {
		return nil, err
	}
	out := []string{fmt.Sprintf("token %q (label %q, manufacturer %q, model %q, serial %q), roles %s",
		name, info.Label, info.Manufacturer, info.Model, info.Serial, strings.Join(roles, ","))}
	for _, m := range ms {
		var need []string
		if m.ForSign {
			need = append(need, "sign")
		}
		if m.ForContent {
			need = append(need, "content")
		}
		line := fmt.Sprintf("%-28s keys %d..%d  %s", m.Name, m.MinKey, m.MaxKey, strings.Join(m.UsedFor, ","))
		if len(need) > 0 {
			line += "  (role " + strings.Join(need, ", ") + ")"
		}
		out = append(out, strings.TrimRight(line, " "))
	}
	r, err := ParseRoles(roles)
	if err != nil {
		return nil, err
	}
	if err := CheckRoles(name, ms, r); err != nil {
		out = append(out, fmt.Sprintf("missing: %v", err))
	} else {
		out = append(out, fmt.Sprintf("roles %s: ok", strings.Join(roles, ",")))
	}
	return out, nil
}

// LoadOrMakePIN reads the PIN in file or, when file does not exist, makes a random one and
// writes it there (mode 0600, its directory made); made says which.
func LoadOrMakePIN(file string) (pin string, made bool, err error) {
	pin, err = LoadPIN(file, "")
	if !errors.Is(err, os.ErrNotExist) {
		return pin, false, err
	}
	r := make([]byte, 8)
	if _, err := rand.Read(r); err != nil {
		return "", false, err
	}
	pin = hex.EncodeToString(r)
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return "", false, err
	}
	if err := os.WriteFile(file, []byte(pin), 0o600); err != nil {
		return "", false, err
	}
	return pin, true, nil
}

// EnsureKey returns the signer of the key keyURI names on the token, generating a key pair of
// kind labelled label when there is none (made says which).
func (t *Token) EnsureKey(ctx context.Context, keyURI, label string, kind KeyKind) (s crypto.Signer, made bool, err error) {
	s, err = t.Signer(ctx, keyURI)
	if errors.Is(err, ErrKeyNotFound) {
		s, err = t.GenerateKeyPair(ctx, label, kind)
		return s, err == nil, err
	}
	return s, false, err
}
