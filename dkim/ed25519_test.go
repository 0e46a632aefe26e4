package dkim_test

import (
	"crypto"
	"crypto/ed25519"
	"errors"
	"io"
	"sync"
	"testing"

	"appliance/internal/softhsmtest"

	"github.com/miekg/pkcs11"
)

// PKCS#11 3.0 values miekg/pkcs11 v1.1.2 does not name.
const (
	ckmECEdwardsKeyPairGen = 0x1055
	ckmEdDSA               = 0x1057
)

// tokenEd25519 is an Ed25519 key made on the test's SoftHSM2 token (CKM_EC_EDWARDS_KEY_PAIR_GEN)
// that signs with CKM_EDDSA there. The hsm package finds keys through crypto11, which has no
// Ed25519 key type; this test signer shows that the token and the dkim package do the rest.
type tokenEd25519 struct {
	mu   sync.Mutex
	ctx  *pkcs11.Ctx
	sess pkcs11.SessionHandle
	priv pkcs11.ObjectHandle
	pub  ed25519.PublicKey
}

func newTokenEd25519(t *testing.T, env *softhsmtest.Env) *tokenEd25519 {
	t.Helper()
	ctx := pkcs11.New(env.Module)
	if ctx == nil {
		t.Fatalf("load %s", env.Module)
	}
	// The module may already be initialised by the hsm package in this process.
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
		ti, err := ctx.GetTokenInfo(s)
		if err == nil && ti.Label == softhsmtest.TokenLabel {
			slot, found = s, true
		}
	}
	if !found {
		t.Fatal("no token labelled " + softhsmtest.TokenLabel)
	}
	sess, err := ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		t.Fatal(err)
	}
	if err := ctx.Login(sess, pkcs11.CKU_USER, softhsmtest.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		t.Fatal(err)
	}
	// edwards25519 by OID 1.3.101.112 (RFC 8410), DER.
	oid := []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	pubH, privH, err := ctx.GenerateKeyPair(sess,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, oid),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		})
	if err != nil {
		t.Fatalf("generate Ed25519 key pair on the token: %v", err)
	}
	attrs, err := ctx.GetAttributeValue(sess, pubH, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		t.Fatal(err)
	}
	point := attrs[0].Value
	// CKA_EC_POINT is the DER OCTET STRING around the 32-byte key.
	if len(point) == 34 && point[0] == 0x04 && point[1] == 32 {
		point = point[2:]
	}
	if len(point) != ed25519.PublicKeySize {
		t.Fatalf("CKA_EC_POINT of %d bytes", len(point))
	}
	k := &tokenEd25519{ctx: ctx, sess: sess, priv: privH, pub: ed25519.PublicKey(point)}
	t.Cleanup(func() { ctx.CloseSession(sess) })
	return k
}

func (k *tokenEd25519) Public() crypto.PublicKey { return k.pub }

func (k *tokenEd25519) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts.HashFunc() != 0 {
		return nil, errors.New("Ed25519 signs the message itself, not a hash")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.ctx.SignInit(k.sess, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, k.priv); err != nil {
		return nil, err
	}
	return k.ctx.Sign(k.sess, msg)
}
