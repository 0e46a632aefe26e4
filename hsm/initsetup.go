package hsm

import (
	"context"
	"fmt"
	"strings"
)

// InitTokenFromFiles initialises a token labelled label on the first free slot of module with
// the security officer PIN read from soPINFile, and sets its user PIN: the one in pinFile when
// that file exists, else a random one written there (mode 0600). pinMade says whether pinFile
// was written, which it may have been even when initialising the token then failed.
func InitTokenFromFiles(module, label, soPINFile, pinFile string) (pinMade bool, err error) {
	so, err := LoadPIN(soPINFile, "")
	if err != nil {
		return false, fmt.Errorf("SO PIN: %w", err)
	}
	pin, made, err := LoadOrMakePIN(pinFile)
	if err != nil {
		return false, fmt.Errorf("user PIN: %w", err)
	}
	return made, InitToken(module, label, so, pin)
}

// SenderKey is a sender's key on the token as SetupSenderKey left it.
type SenderKey struct {
	URI   string // pkcs11:token=TOKEN;object=LABEL
	Label string
	Made  bool   // generated now, not found
	CSR   []byte // a PKCS#10 request in PEM for the address, signed by the key
}

// SetupSenderKey gives addr a key on the token labelled tokenLabel: the one labelled after addr
// (KeyLabel; used records the labels given so far) when there is one, else a new key pair of
// kind; and a certificate request for addr signed by it.
func (t *Token) SetupSenderKey(ctx context.Context, tokenLabel, addr string, used map[string]bool, kind KeyKind) (SenderKey, error) {
	k := SenderKey{Label: KeyLabel(addr, used)}
	k.URI = fmt.Sprintf("pkcs11:token=%s;object=%s", tokenLabel, k.Label)
	signer, made, err := t.EnsureKey(ctx, k.URI, k.Label, kind)
	if err != nil {
		return k, err
	}
	k.Made = made
	k.CSR, err = CertificateRequest(signer, addr, addr)
	return k, err
}

// DescribeToken describes module and the token uri selects (C_GetInfo, C_GetTokenInfo; no
// login): library is the module's library line, token the token's, "" when uri selects it by
// serial or manufacturer rather than label (opening it says whether it is there).
func DescribeToken(module, uri string) (library, token string, err error) {
	var label string
	if u, err := ParseURI(uri); err == nil {
		label = u.Token
	}
	lines, err := ModuleInfo(module, label)
	if err != nil && (label != "" || len(lines) < 2) {
		return "", "", err
	}
	library = strings.TrimSpace(strings.TrimPrefix(lines[1], "library"))
	if len(lines) > 2 && label != "" { // without a label, ModuleInfo may find an empty slot's
		token = strings.TrimSpace(strings.TrimPrefix(lines[2], "token"))
	}
	return library, token, nil
}
