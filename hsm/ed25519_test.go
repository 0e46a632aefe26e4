package hsm_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"

	"github.com/miekg/pkcs11"
)

// generateEd25519 makes an Ed25519 key pair (CKM_EC_EDWARDS_KEY_PAIR_GEN) on the test token,
// labelled label with a random CKA_ID, through miekg/pkcs11 (crypto11 cannot), removed when the
// test ends. It returns the point the token reports (CKA_EC_POINT, unwrapped).
func generateEd25519(t *testing.T, env *softhsmtest.Env, label string) ed25519.PublicKey {
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
		if ti, err := ctx.GetTokenInfo(s); err == nil && ti.Label == softhsmtest.TokenLabel {
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
	t.Cleanup(func() { ctx.CloseSession(sess) })
	if err := ctx.Login(sess, pkcs11.CKU_USER, softhsmtest.PIN); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
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
func TestSignerEd25519(t *testing.T) {
	tok, env := open(t, nil)
	if env.Impl != softhsmtest.ImplSoftHSM && !tok.HasMechanism(0x1057) {
		// opencryptoki 3.8.1's software token has no CKM_EDDSA; SoftHSM2 2.6.1 must have it.
		t.Skipf("%s has no CKM_EDDSA; the SoftHSM2 run covers Ed25519", env.Impl)
	}
	want := generateEd25519(t, env, "ed-signer")
	ctx := context.Background()
	msg := []byte("DKIM-Signature: v=1; a=ed25519-sha256; ...")
	for _, uri := range []string{"pkcs11:object=ed-signer", "pkcs11:object=ed-signer;type=private"} {
		s, err := tok.Signer(ctx, uri)
		if err != nil {
			t.Fatalf("Signer(%s): %v", uri, err)
		}
		pub, ok := s.Public().(ed25519.PublicKey)
		if !ok || !pub.Equal(want) {
			t.Fatalf("Public() = %T %x, want the token's point %x", s.Public(), s.Public(), want)
		}
		sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
		if err != nil {
			t.Fatalf("Sign: %v", err)
		}
		if !ed25519.Verify(want, msg, sig) {
			t.Fatal("ed25519.Verify rejects the token's signature")
		}
		if ed25519.Verify(want, append(msg, 'x'), sig) {
			t.Fatal("ed25519.Verify accepts the signature for another message")
		}
		sig2, err := s.Sign(rand.Reader, msg, &ed25519.Options{})
		if err != nil || !ed25519.Verify(want, msg, sig2) {
			t.Fatalf("Sign with *ed25519.Options: %v", err)
		}
		digest := sha256.Sum256(msg)
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); !errors.Is(err, hsm.ErrInvalidArgument) {
			t.Fatalf("Sign of a SHA-256 digest (Ed25519ph) = %v, want ErrInvalidArgument", err)
		}
	}
	// After a reconnect the Signer finds the key again and still signs.
	s, err := tok.Signer(ctx, "pkcs11:object=ed-signer")
	if err != nil {
		t.Fatal(err)
	}
	if err := tok.Reconnect(); err != nil {
		t.Fatal(err)
	}
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(want, msg, sig) {
		t.Fatalf("Sign after Reconnect: %v", err)
	}
	// `keys list` shows the key with its public half.
	keys, err := tok.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, k := range keys {
		if k.Label == "ed-signer" {
			listed = true
			if pub, ok := k.Public.(ed25519.PublicKey); !ok || !pub.Equal(want) {
				t.Errorf("ListKeys: ed-signer's Public = %T %x, want %x", k.Public, k.Public, want)
			}
		}
	}
	if !listed {
		t.Error("ListKeys does not list ed-signer")
	}
	// The RSA keys crypto11 finds are unaffected by an Ed25519 key on the token.
	if _, err := tok.Signer(ctx, "pkcs11:object=alice"); err != nil {
		t.Fatalf("RSA key beside an Ed25519 key: %v", err)
	}
	if _, err := tok.Signer(ctx, "pkcs11:object=no-such-key"); !errors.Is(err, hsm.ErrKeyNotFound) {
		t.Fatalf("missing key: %v, want ErrKeyNotFound", err)
	}
}
