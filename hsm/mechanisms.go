package hsm

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/pkcs11"
)

// Roles say what the appliance asks of a token. A deployment may keep senders' keys on a card
// that can only sign and do content keys on an HSM that can do everything; Open refuses a token
// that lacks a mechanism one of its roles needs, so the gap shows at start and not at the first
// message.
type Roles uint8

const (
	// RoleSign: the token holds signing keys (senders, lists).
	RoleSign Roles = 1 << iota
	// RoleContent: the token makes content keys, encrypts with them and wraps them for
	// recipients; a list's key on it also unwraps.
	RoleContent

	// AllRoles is what a zero Config.Roles means: the one token does everything.
	AllRoles = RoleSign | RoleContent
)

// String lists the roles as the configuration spells them ("sign,content").
func (r Roles) String() string {
	var names []string
	if r&RoleSign != 0 {
		names = append(names, "sign")
	}
	if r&RoleContent != 0 {
		names = append(names, "content")
	}
	return strings.Join(names, ",")
}

// ParseRole reads one role name as the configuration spells it.
func ParseRole(s string) (Roles, error) {
	switch s {
	case "sign":
		return RoleSign, nil
	case "content":
		return RoleContent, nil
	}
	return 0, &Error{Op: fmt.Sprintf("parse role %q", s), Kind: ErrInvalidArgument, Err: fmt.Errorf("want sign or content")}
}

// contentMechanisms are what RoleContent uses: AES-256 session keys (cek.go), both content
// encryption modes the profiles choose from, and RSA key transport (PKCS#1 v1.5 always; OAEP is
// probed separately and its absence only narrows the choice of hash).
var contentMechanisms = []uint{pkcs11.CKM_AES_KEY_GEN, pkcs11.CKM_AES_CBC_PAD, pkcs11.CKM_AES_GCM, pkcs11.CKM_RSA_PKCS}

// signMechanisms are the raw signature mechanisms crypto11 signs through: PKCS#1 v1.5 over a
// DigestInfo the host builds, and ECDSA over the digest. A token with RoleSign needs at least one;
// which one a key needs is checked when its Signer is found.
var signMechanisms = []uint{pkcs11.CKM_RSA_PKCS, pkcs11.CKM_ECDSA}

// MechanismError is the cause inside an ErrMechanism error: it names the token, the mechanism it
// lacks, and what needed it.
type MechanismError struct {
	Token     string // the configured name, or the label
	Mechanism []uint // one of these would do
	Need      string // "role content", "key \"pkcs11:...\"", ...
}

func (e *MechanismError) Error() string {
	names := make([]string, len(e.Mechanism))
	for i, m := range e.Mechanism {
		names[i] = MechanismName(m)
	}
	if len(names) == 1 {
		return fmt.Sprintf("token %q has no %s, needed for %s", e.Token, names[0], e.Need)
	}
	return fmt.Sprintf("token %q has none of %s, needed for %s", e.Token, strings.Join(names, ", "), e.Need)
}

// probeMechanisms asks the token what it can do (C_GetMechanismList) and checks roles against it.
func (c *conn) probeMechanisms(name string, roles Roles) error {
	list, err := c.p11.GetMechanismList(c.slot)
	if err != nil {
		return err
	}
	c.mechs = make(map[uint]bool, len(list))
	for _, m := range list {
		c.mechs[m.Mechanism] = true
	}
	return checkRoles(name, func(m uint) bool { return c.mechs[m] }, roles)
}

// CheckRoles says what, of what roles need, a token with mechanisms ms lacks: nil when nothing,
// else an ErrMechanism error like the one Open gives.
func CheckRoles(name string, ms []Mechanism, roles Roles) error {
	have := map[uint]bool{}
	for _, m := range ms {
		have[m.ID] = true
	}
	return checkRoles(name, func(m uint) bool { return have[m] }, roles)
}

func checkRoles(name string, has func(uint) bool, roles Roles) error {
	if roles&RoleContent != 0 {
		for _, m := range contentMechanisms {
			if !has(m) {
				return &Error{Op: "check token mechanisms", Kind: ErrMechanism,
					Err: &MechanismError{Token: name, Mechanism: []uint{m}, Need: "role content"}}
			}
		}
	}
	if roles&RoleSign != 0 && !has(signMechanisms[0]) && !has(signMechanisms[1]) {
		return &Error{Op: "check token mechanisms", Kind: ErrMechanism,
			Err: &MechanismError{Token: name, Mechanism: signMechanisms, Need: "role sign"}}
	}
	return nil
}

// signMechanismFor is the mechanism a key of pub's type signs with (pss for RSA-PSS).
func signMechanismFor(pub crypto.PublicKey, pss bool) (uint, bool) {
	switch pub.(type) {
	case *rsa.PublicKey:
		if pss {
			return pkcs11.CKM_RSA_PKCS_PSS, true
		}
		return pkcs11.CKM_RSA_PKCS, true
	case *ecdsa.PublicKey:
		return pkcs11.CKM_ECDSA, true
	case ed25519.PublicKey:
		return ckmEdDSA, true
	}
	return 0, false
}

// checkSignMechanism refuses a key the token cannot sign with.
func (c *conn) checkSignMechanism(name, keyURI string, pub crypto.PublicKey, pss bool) error {
	m, ok := signMechanismFor(pub, pss)
	if !ok {
		return &Error{Op: fmt.Sprintf("sign with %q", keyURI), Kind: ErrInvalidArgument, Err: fmt.Errorf("unsupported key type %T", pub)}
	}
	if !c.mechs[m] {
		return &Error{Op: fmt.Sprintf("sign with %q", keyURI), Kind: ErrMechanism,
			Err: &MechanismError{Token: name, Mechanism: []uint{m}, Need: fmt.Sprintf("key %q", keyURI)}}
	}
	return nil
}

// Mechanism is one entry of the token's C_GetMechanismList with its C_GetMechanismInfo.
type Mechanism struct {
	ID             uint
	Name           string // CKM_... or a hex number for mechanisms this package has no name for
	MinKey, MaxKey uint   // key sizes, in the unit the mechanism uses (bits or bytes)
	Flags          uint   // CKF_ flags: what the mechanism may be used for
	UsedFor        []string
	ForSign        bool // one of the mechanisms role sign can use
	ForContent     bool // needed by role content
}

// Mechanisms lists what the token can do, sorted by mechanism number, as `keys mechanisms` prints
// it.
func (t *Token) Mechanisms() ([]Mechanism, error) {
	c, err := t.begin("list mechanisms")
	if err != nil {
		return nil, err
	}
	defer t.end()
	list, err := c.p11.GetMechanismList(c.slot)
	if err != nil {
		return nil, fail("list mechanisms", err)
	}
	out := make([]Mechanism, 0, len(list))
	for _, m := range list {
		me := Mechanism{ID: m.Mechanism, Name: MechanismName(m.Mechanism)}
		if info, err := c.p11.GetMechanismInfo(c.slot, []*pkcs11.Mechanism{pkcs11.NewMechanism(m.Mechanism, nil)}); err == nil {
			me.MinKey, me.MaxKey, me.Flags = info.MinKeySize, info.MaxKeySize, info.Flags
			me.UsedFor = flagNames(info.Flags)
		}
		for _, x := range signMechanisms {
			me.ForSign = me.ForSign || x == m.Mechanism
		}
		for _, x := range contentMechanisms {
			me.ForContent = me.ForContent || x == m.Mechanism
		}
		out = append(out, me)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// HasMechanism reports whether the connected token listed m at its last (re)connection.
func (t *Token) HasMechanism(m uint) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.conn != nil && t.conn.mechs[m]
}

// TokenInfo is what the token says about itself (CK_TOKEN_INFO), padding removed.
type TokenInfo struct {
	Label, Manufacturer, Model, Serial string
}

// Info describes the connected token.
func (t *Token) Info() (TokenInfo, error) {
	c, err := t.begin("describe token")
	if err != nil {
		return TokenInfo{}, err
	}
	defer t.end()
	trim := func(s string) string { return strings.TrimRight(s, " ") }
	return TokenInfo{Label: trim(c.token.Label), Manufacturer: trim(c.token.ManufacturerID),
		Model: trim(c.token.Model), Serial: trim(c.token.SerialNumber)}, nil
}

// Roles is what the token was opened for.
func (t *Token) Roles() Roles { return t.cfg.Roles }

// Name is the token's configured name (its label if none was given).
func (t *Token) Name() string { return t.cfg.name() }

func flagNames(f uint) []string {
	var out []string
	for _, x := range []struct {
		f    uint
		name string
	}{
		{pkcs11.CKF_ENCRYPT, "encrypt"}, {pkcs11.CKF_DECRYPT, "decrypt"}, {pkcs11.CKF_DIGEST, "digest"},
		{pkcs11.CKF_SIGN, "sign"}, {pkcs11.CKF_VERIFY, "verify"}, {pkcs11.CKF_GENERATE, "generate"},
		{pkcs11.CKF_GENERATE_KEY_PAIR, "generate-key-pair"}, {pkcs11.CKF_WRAP, "wrap"},
		{pkcs11.CKF_UNWRAP, "unwrap"}, {pkcs11.CKF_DERIVE, "derive"},
	} {
		if f&x.f != 0 {
			out = append(out, x.name)
		}
	}
	return out
}

// mechanismNames covers what the appliance uses and what tokens commonly list beside it.
var mechanismNames = map[uint]string{
	pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN:  "CKM_RSA_PKCS_KEY_PAIR_GEN",
	pkcs11.CKM_RSA_PKCS:               "CKM_RSA_PKCS",
	pkcs11.CKM_RSA_X_509:              "CKM_RSA_X_509",
	pkcs11.CKM_RSA_PKCS_OAEP:          "CKM_RSA_PKCS_OAEP",
	pkcs11.CKM_RSA_PKCS_PSS:           "CKM_RSA_PKCS_PSS",
	pkcs11.CKM_SHA1_RSA_PKCS:          "CKM_SHA1_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS:        "CKM_SHA256_RSA_PKCS",
	pkcs11.CKM_SHA384_RSA_PKCS:        "CKM_SHA384_RSA_PKCS",
	pkcs11.CKM_SHA512_RSA_PKCS:        "CKM_SHA512_RSA_PKCS",
	pkcs11.CKM_SHA256_RSA_PKCS_PSS:    "CKM_SHA256_RSA_PKCS_PSS",
	pkcs11.CKM_SHA384_RSA_PKCS_PSS:    "CKM_SHA384_RSA_PKCS_PSS",
	pkcs11.CKM_SHA512_RSA_PKCS_PSS:    "CKM_SHA512_RSA_PKCS_PSS",
	pkcs11.CKM_SHA_1:                  "CKM_SHA_1",
	pkcs11.CKM_SHA224:                 "CKM_SHA224",
	pkcs11.CKM_SHA256:                 "CKM_SHA256",
	pkcs11.CKM_SHA384:                 "CKM_SHA384",
	pkcs11.CKM_SHA512:                 "CKM_SHA512",
	pkcs11.CKM_EC_KEY_PAIR_GEN:        "CKM_EC_KEY_PAIR_GEN",
	pkcs11.CKM_ECDSA:                  "CKM_ECDSA",
	pkcs11.CKM_ECDSA_SHA1:             "CKM_ECDSA_SHA1",
	pkcs11.CKM_ECDSA_SHA256:           "CKM_ECDSA_SHA256",
	pkcs11.CKM_ECDSA_SHA384:           "CKM_ECDSA_SHA384",
	pkcs11.CKM_ECDSA_SHA512:           "CKM_ECDSA_SHA512",
	pkcs11.CKM_ECDH1_DERIVE:           "CKM_ECDH1_DERIVE",
	ckmEdDSA:                          "CKM_EDDSA",
	pkcs11.CKM_AES_KEY_GEN:            "CKM_AES_KEY_GEN",
	pkcs11.CKM_AES_ECB:                "CKM_AES_ECB",
	pkcs11.CKM_AES_CBC:                "CKM_AES_CBC",
	pkcs11.CKM_AES_CBC_PAD:            "CKM_AES_CBC_PAD",
	pkcs11.CKM_AES_CTR:                "CKM_AES_CTR",
	pkcs11.CKM_AES_GCM:                "CKM_AES_GCM",
	pkcs11.CKM_AES_CMAC:               "CKM_AES_CMAC",
	pkcs11.CKM_AES_KEY_WRAP:           "CKM_AES_KEY_WRAP",
	pkcs11.CKM_AES_KEY_WRAP_PAD:       "CKM_AES_KEY_WRAP_PAD",
	pkcs11.CKM_GENERIC_SECRET_KEY_GEN: "CKM_GENERIC_SECRET_KEY_GEN",
	pkcs11.CKM_SHA256_HMAC:            "CKM_SHA256_HMAC",
	pkcs11.CKM_DES3_KEY_GEN:           "CKM_DES3_KEY_GEN",
	pkcs11.CKM_DES3_CBC:               "CKM_DES3_CBC",
	pkcs11.CKM_MD5:                    "CKM_MD5",
}

// MechanismName is the CKM_ name of m, or its number in hex.
func MechanismName(m uint) string {
	if n, ok := mechanismNames[m]; ok {
		return n
	}
	return fmt.Sprintf("0x%08X", m)
}
