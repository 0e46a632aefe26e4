package softhsmtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"github.com/miekg/pkcs11"
)

// GenerateEd25519 makes an Ed25519 key pair (CKM_EC_EDWARDS_KEY_PAIR_GEN) on the test token,
// labelled label with a random CKA_ID, through miekg/pkcs11 (crypto11 cannot), removed when the
// test ends. It returns the point the token reports (CKA_EC_POINT, unwrapped).
func GenerateEd25519(t *testing.T, env *Env, label string) ed25519.PublicKey {
	t.Helper()
	ctx := pkcs11.New(env.Module)
	if ctx == nil {
		t.Fatalf("load %s", env.Module)
	}
	if err := ctx.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		t.Fatal(err)
	}
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		t.Fatal(err)
	}
	var slot uint
	found := false
	for _, s := range slots {
		if ti, err := ctx.GetTokenInfo(s); err == nil && ti.Label == TokenLabel {
			slot, found = s, true
		}
	}
	if !found {
		t.Fatal("no token labelled " + TokenLabel)
	}
	sess, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctx.CloseSession(sess) })
	if err := ctx.Login(sess, pkcs11.CKU_USER, PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	id := make([]byte, 16)
	rand.Read(id)
	const ckmECEdwardsKeyPairGen = 0x1055
	pubH, privH, err := ctx.GenerateKeyPair(sess,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			// edwards25519 by OID 1.3.101.112 (RFC 8410), DER.
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, []byte{0x06, 0x03, 0x2b, 0x65, 0x70}),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		})
	if err != nil {
		t.Fatalf("generate Ed25519 key pair on the token: %v", err)
	}
	t.Cleanup(func() {
		ctx.DestroyObject(sess, privH)
		ctx.DestroyObject(sess, pubH)
	})
	attrs, err := ctx.GetAttributeValue(sess, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		t.Fatal(err)
	}
	point := attrs[0].Value
	// SoftHSM2 2.6.1 stores the DER OCTET STRING around the point, as PKCS#11 v3.0 says.
	if len(point) != 34 || point[0] != 0x04 || point[1] != 32 {
		t.Fatalf("CKA_EC_POINT %s: not an OCTET STRING of 32 bytes", hex.EncodeToString(point))
	}
	return ed25519.PublicKey(point[2:])
}

// An Ed25519 key on the token (CKK_EC_EDWARDS, which crypto11 refuses) is a crypto.Signer whose
// Public is the token's point and whose signatures ed25519.Verify accepts; RSA keys beside it are
// still found through crypto11.
