package hsm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"appliance/hsm"
	"appliance/internal/softhsmtest"
)

// The hsm tests run against SoftHSM2 and, with APPLIANCE_TEST_TOKEN=opencryptoki, against
// opencryptoki 3.8.1's software token (softhsm-test/ocktoken.sh). These helpers hold what differs
// between the two (README "Tokens", docs/decisions.md "A second PKCS#11 implementation").

func ock(env *softhsmtest.Env) bool { return env.Impl == softhsmtest.ImplOpencryptoki }

// needGCM skips a test (or subtest) of AES-GCM on a token without CKM_AES_GCM.
func needGCM(t *testing.T, env *softhsmtest.Env) {
	t.Helper()
	if ock(env) {
		t.Skip("opencryptoki 3.8.1's software token has no CKM_AES_GCM")
	}
}

// needEC skips a test (or subtest) of EC keys on a token without CKM_EC_KEY_PAIR_GEN and CKM_ECDSA.
func needEC(t *testing.T, env *softhsmtest.Env) {
	t.Helper()
	if ock(env) {
		t.Skip("opencryptoki 3.8.1's software token has no EC mechanisms")
	}
}

// quickKind is the cheapest key to generate where a test needs some key, not a particular kind.
func quickKind(env *softhsmtest.Env) hsm.KeyKind {
	if ock(env) {
		return hsm.RSA2048
	}
	return hsm.P256
}

// What opencryptoki's software token can and cannot do for the appliance, checked: it signs with
// the imported RSA keys (PKCS#1 v1.5 and PSS) and with keys the appliance generates on it, it
// generates content keys and encrypts with AES-CBC, and it is refused as a content token because
// it has no CKM_AES_GCM, naming the token and the mechanism.
func TestSecondImplementation(t *testing.T) {
	env := softhsmtest.Setup(t)
	if !ock(env) {
		t.Skipf("%s=%s runs this against opencryptoki", softhsmtest.ImplEnv, softhsmtest.ImplOpencryptoki)
	}
	ctx := context.Background()

	was := hsm.RequireGCMForTest(true)
	_, err := hsm.Open(config(env))
	hsm.RequireGCMForTest(was)
	if !errors.Is(err, hsm.ErrMechanism) || hsm.IsTemporary(err) || !strings.Contains(err.Error(), "CKM_AES_GCM") ||
		!strings.Contains(err.Error(), `"appliance"`) {
		t.Fatalf("Open for sign and content: %v, want a permanent ErrMechanism naming the token and CKM_AES_GCM", err)
	}
	t.Log(err)

	tok, _ := open(t, func(c *hsm.Config) { c.Roles = hsm.RoleSign })
	ms, err := tok.Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, m := range ms {
		have[m.Name] = true
	}
	t.Logf("%d mechanisms", len(ms))
	for name, want := range map[string]bool{"CKM_RSA_PKCS": true, "CKM_RSA_PKCS_PSS": true, "CKM_RSA_PKCS_OAEP": true,
		"CKM_AES_KEY_GEN": true, "CKM_AES_CBC_PAD": true, "CKM_AES_GCM": false, "CKM_ECDSA": false, "CKM_EC_KEY_PAIR_GEN": false} {
		if have[name] != want {
			t.Errorf("%s listed: %v, want %v (has opencryptoki changed?)", name, have[name], want)
		}
	}
	if _, err := tok.GenerateKeyPair(ctx, unique("ock-p256"), hsm.P256); !errors.Is(err, hsm.ErrMechanism) && !errors.Is(err, hsm.ErrToken) {
		t.Errorf("GenerateKeyPair P256: %v, want the token's refusal", err)
	} else {
		t.Log(err)
	}
	s, err := tok.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("second implementation"))
	for _, opts := range []crypto.SignerOpts{crypto.SHA256, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}} {
		sig, err := s.Sign(rand.Reader, digest[:], opts)
		if err != nil {
			t.Fatalf("Sign %T: %v", opts, err)
		}
		if err := verify(s.Public(), digest[:], sig, opts); err != nil {
			t.Fatalf("verify %T: %v", opts, err)
		}
	}
}

// wantOAEP is the OAEP hash the token takes: SoftHSM 2.6 only SHA-1, opencryptoki 3.8.1 SHA-256.
func wantOAEP(env *softhsmtest.Env) crypto.Hash {
	if ock(env) {
		return crypto.SHA256
	}
	return crypto.SHA1
}

// sealSome encrypts plain under k with AES-GCM, or AES-CBC on a token without GCM, and returns
// the software decryption of the result for the key's value.
func sealSome(ctx context.Context, env *softhsmtest.Env, k *hsm.CEK, plain []byte) (func(key []byte) ([]byte, error), error) {
	var ct bytes.Buffer
	if ock(env) {
		iv := make([]byte, 16)
		rand.Read(iv)
		if err := k.EncryptCBC(ctx, iv, bytes.NewReader(plain), &ct); err != nil {
			return nil, err
		}
		return func(key []byte) ([]byte, error) {
			b, err := aes.NewCipher(key)
			if err != nil {
				return nil, err
			}
			c := ct.Bytes()
			if len(c) == 0 || len(c)%16 != 0 {
				return nil, errors.New("ciphertext not whole blocks")
			}
			out := make([]byte, len(c))
			cipher.NewCBCDecrypter(b, iv).CryptBlocks(out, c)
			pad := int(out[len(out)-1])
			if pad < 1 || pad > 16 {
				return nil, errors.New("bad padding")
			}
			return out[:len(out)-pad], nil
		}, nil
	}
	nonce := make([]byte, 12)
	rand.Read(nonce)
	tag, err := k.EncryptGCM(ctx, nonce, nil, bytes.NewReader(plain), &ct)
	if err != nil {
		return nil, err
	}
	return func(key []byte) ([]byte, error) {
		b, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		gcm, err := cipher.NewGCM(b)
		if err != nil {
			return nil, err
		}
		return gcm.Open(nil, nonce, append(ct.Bytes(), tag...), nil)
	}, nil
}
