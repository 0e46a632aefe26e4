package hsm_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

func generateEd25519(t *testing.T, env *softhsmtest.Env, label string) ed25519.PublicKey {
	return softhsmtest.GenerateEd25519(t, env, label)
}

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

// TestGenerateEd25519: `keys generate -type ed25519` makes an Ed25519 key pair on the token
// (CKM_EC_EDWARDS_KEY_PAIR_GEN, edwards25519 by OID) that signs through CKM_EDDSA, is found
// again by its label like any key (what `keys dkim-record` and [[dkim]] use) and is listed with
// its public half; a second key with the label is refused.
func TestGenerateEd25519(t *testing.T) {
	tok, env := open(t, nil)
	if env.Impl != softhsmtest.ImplSoftHSM && !tok.HasMechanism(0x1055) {
		t.Skipf("%s has no CKM_EC_EDWARDS_KEY_PAIR_GEN; the SoftHSM2 run covers Ed25519", env.Impl)
	}
	ctx := context.Background()
	label := unique("gen-ed25519")
	s, err := tok.GenerateKeyPair(ctx, label, hsm.Ed25519)
	if err != nil {
		t.Fatalf("GenerateKeyPair(Ed25519): %v", err)
	}
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok || len(pub) != ed25519.PublicKeySize {
		t.Fatalf("Public() = %T, want an ed25519.PublicKey", s.Public())
	}
	msg := []byte("DKIM-Signature: v=1; a=ed25519-sha256; d=example.test; s=ed;")
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil || !ed25519.Verify(pub, msg, sig) {
		t.Fatalf("the generated key's signature does not verify: %v", err)
	}
	found, err := tok.Signer(ctx, "pkcs11:object="+label)
	if err != nil {
		t.Fatalf("Signer by label: %v", err)
	}
	if !pub.Equal(found.Public()) {
		t.Errorf("found by label: %x, generated %x", found.Public(), pub)
	}
	if _, err := tok.GenerateKeyPair(ctx, label, hsm.Ed25519); !errors.Is(err, hsm.ErrKeyExists) {
		t.Errorf("second key labelled %q: %v, want ErrKeyExists", label, err)
	}
	keys, err := tok.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if k.Label == label {
			n++
			if p, ok := k.Public.(ed25519.PublicKey); !ok || !p.Equal(pub) {
				t.Errorf("ListKeys: %s's Public = %T, want the generated key", label, k.Public)
			}
		}
	}
	if n != 1 {
		t.Errorf("ListKeys lists %d keys labelled %s, want 1", n, label)
	}
}
