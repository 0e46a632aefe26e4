package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"testing"

	"appliance/internal/softhsmtest"
)

// kariVariants are the KeyAgreeRecipientInfos openssl cms -encrypt writes for an EC certificate:
// its default SHA-1 KDF, each -keyopt ecdh_kdf_md, the cofactor scheme, AES-128 (and so
// id-aes128-wrap), AES-GCM, subjectKeyIdentifier and BER streaming.
var kariVariants = []struct {
	name     string
	args     []string
	perRecip []string
	hash     crypto.Hash
	kek      int
}{
	{"default sha1 kdf aes256-cbc", []string{"-aes256"}, nil, crypto.SHA1, 32},
	{"sha224 kdf", []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha224"}, crypto.SHA224, 32},
	{"sha256 kdf", []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha256"}, crypto.SHA256, 32},
	{"sha384 kdf", []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha384"}, crypto.SHA384, 32},
	{"sha512 kdf", []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha512"}, crypto.SHA512, 32},
	{"cofactor sha256 kdf", []string{"-aes256"}, []string{"-keyopt", "ecdh_cofactor_mode:1", "-keyopt", "ecdh_kdf_md:sha256"}, crypto.SHA256, 32},
	{"aes128-cbc aes128-wrap", []string{"-aes128"}, []string{"-keyopt", "ecdh_kdf_md:sha256"}, crypto.SHA256, 16},
	{"aes-256-gcm keyid", []string{"-aes-256-gcm", "-keyid"}, []string{"-keyopt", "ecdh_kdf_md:sha256"}, crypto.SHA256, 32},
	{"stream ber", []string{"-aes256", "-stream"}, nil, crypto.SHA1, 32},
}

// TestKeyAgreementOpenSSL reads what openssl writes for frank (P-256) and peggy (P-384) with
// RecipientInfo.KeyAgreement and decrypts it with their key files (DecryptWithKey's EC path,
// which does in software what the list's token does).
func TestKeyAgreementOpenSSL(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nto an EC key\r\n")
	for _, v := range kariVariants {
		t.Run("ok "+v.name, func(t *testing.T) {
			t.Parallel()
			der := opensslEncrypt(t, env, msg, v.args, v.perRecip, "frank", "peggy")
			e, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"frank", "peggy"} {
				cert := env.Cert(t, u)
				var kas []*KeyAgreement
				for _, ri := range e.RecipientInfos {
					ka, err := ri.KeyAgreement(cert)
					if errors.Is(err, ErrNotRecipient) {
						continue
					}
					if err != nil {
						t.Fatalf("%s: %v", u, err)
					}
					kas = append(kas, ka)
				}
				if len(kas) != 1 {
					t.Fatalf("%s: %d entries", u, len(kas))
				}
				if kas[0].Hash != v.hash || kas[0].KEKSize != v.kek {
					t.Fatalf("%s: KDF %v, KEK %d bytes; want %v, %d", u, kas[0].Hash, kas[0].KEKSize, v.hash, v.kek)
				}
				got, err := DecryptWithKey(der, cert, env.Key(t, u))
				if err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("%s: DecryptWithKey = %q, %v", u, got, err)
				}
			}
		})
	}
}

// TestKeyAgreementErrors: another P-256 key does not unwrap frank's entry, a wrapped key or
// originator point changed in transit is refused, and an RSA certificate has no key agreement.
func TestKeyAgreementErrors(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\ntampered\r\n")
	der := opensslEncrypt(t, env, msg, []string{"-aes256"}, []string{"-keyopt", "ecdh_kdf_md:sha256"}, "frank")
	frank := env.Cert(t, "frank")
	e, err := ParseEnveloped(der)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := e.RecipientInfos[0].KeyAgreement(frank)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("fail wrong key", func(t *testing.T) {
		other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := DecryptWithKey(der, frank, other); err == nil {
			t.Fatalf("another key decrypted: %q", got)
		}
	})
	t.Run("fail wrong certificate", func(t *testing.T) {
		if _, err := DecryptWithKey(der, env.Cert(t, "peggy"), env.Key(t, "peggy")); !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("err = %v, want ErrNotRecipient", err)
		}
	})
	t.Run("fail tampered wrapped key", func(t *testing.T) {
		bad := flipIn(t, der, ka.EncryptedKey)
		if got, err := DecryptWithKey(bad, frank, env.Key(t, "frank")); err == nil {
			t.Fatalf("tampered wrapped key decrypted: %q", got)
		}
	})
	t.Run("fail originator point off the curve", func(t *testing.T) {
		bad := flipIn(t, der, ka.OriginatorKey)
		e, err := ParseEnveloped(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.RecipientInfos[0].KeyAgreement(frank); !errors.Is(err, ErrMalformed) {
			t.Fatalf("err = %v, want ErrMalformed", err)
		}
	})
	t.Run("fail rsa certificate", func(t *testing.T) {
		if _, err := e.RecipientInfos[0].KeyAgreement(env.Cert(t, "bob")); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v, want ErrUnsupported", err)
		}
	})
	t.Run("fail keytrans entry", func(t *testing.T) {
		d := opensslEncrypt(t, env, msg, []string{"-aes256"}, nil, "bob")
		e, err := ParseEnveloped(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.RecipientInfos[0].KeyAgreement(frank); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err = %v, want ErrUnsupported", err)
		}
	})
}

// flipIn returns der with the last byte of part (found once in der) changed.
func flipIn(t *testing.T, der, part []byte) []byte {
	t.Helper()
	i := bytes.Index(der, part)
	if i < 0 || bytes.Count(der, part) != 1 {
		t.Fatal("part not found once")
	}
	out := bytes.Clone(der)
	out[i+len(part)-1] ^= 0x01
	return out
}

// TestAESUnwrap: the software unwrap undoes the test side's RFC 3394 reference (checked against
// RFC 3394 section 4.6 in TestAESKeyWrapVector) and refuses a changed wrap.
func TestAESUnwrap(t *testing.T) {
	kek := mustHex(t, "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F")
	key := mustHex(t, "00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F")
	w, err := aesKeyWrap(kek, key)
	if err != nil {
		t.Fatal(err)
	}
	got, err := aesUnwrap(kek, w)
	if err != nil || !bytes.Equal(got, key) {
		t.Fatalf("unwrap = %X, %v", got, err)
	}
	w[10] ^= 1
	if _, err := aesUnwrap(kek, w); err == nil {
		t.Fatal("changed wrap unwrapped")
	}
}
