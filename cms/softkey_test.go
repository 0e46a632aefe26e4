package cms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"appliance/cms/oid"
	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	os.Exit(code)
}

// softKey is a ContentKey in process memory, for tests only: production keys live on the HSM.
type softKey struct {
	key   [32]byte
	calls int // EncryptCBC/EncryptGCM calls, to check Encrypt encrypts once
}

func newSoftKey(t testing.TB) *softKey {
	t.Helper()
	k := &softKey{}
	if _, err := rand.Read(k.key[:]); err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *softKey) EncryptCBC(ctx context.Context, iv []byte, plaintext io.Reader, ciphertext io.Writer) error {
	k.calls++
	data, err := io.ReadAll(plaintext)
	if err != nil {
		return err
	}
	pad := 16 - len(data)%16
	data = append(data, bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(k.key[:])
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(data, data)
	_, err = ciphertext.Write(data)
	return err
}

func (k *softKey) EncryptGCM(ctx context.Context, nonce, aad []byte, plaintext io.Reader, ciphertext io.Writer) ([]byte, error) {
	k.calls++
	data, err := io.ReadAll(plaintext)
	if err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(k.key[:])
	gcm, _ := cipher.NewGCM(block)
	sealed := gcm.Seal(nil, nonce, data, aad)
	n := len(sealed) - gcm.Overhead()
	if _, err := ciphertext.Write(sealed[:n]); err != nil {
		return nil, err
	}
	return sealed[n:], nil
}

func (k *softKey) WrapRSA(ctx context.Context, pub *rsa.PublicKey, oaepHash crypto.Hash) ([]byte, error) {
	if oaepHash == 0 {
		return rsa.EncryptPKCS1v15(rand.Reader, pub, k.key[:])
	}
	return rsa.EncryptOAEP(oaepHash.New(), rand.Reader, pub, k.key[:], nil)
}

var _ ContentKey = (*softKey)(nil)

var errNotRecipient = errors.New("no recipientinfo for this certificate")

// softDecrypt is the test side's decryptor: the appliance itself never decrypts.
func softDecrypt(der []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	env, err := ParseEnveloped(der)
	if err != nil {
		return nil, err
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an rsa key")
	}
	var ri *RecipientInfo
	for _, r := range env.RecipientInfos {
		if r.Matches(cert) {
			ri = r
		}
	}
	if ri == nil {
		return nil, errNotRecipient
	}
	h, err := ri.OAEPHash()
	if err != nil {
		return nil, err
	}
	var cek []byte
	if h == 0 {
		cek, err = rsa.DecryptPKCS1v15(nil, priv, ri.EncryptedKey)
	} else {
		cek, err = rsa.DecryptOAEP(h.New(), nil, priv, ri.EncryptedKey, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("unwrap: %w", err)
	}
	ct, err := env.EncryptedContent()
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	alg := env.ContentEncryptionAlgorithm
	switch {
	case alg.Algorithm.Equal(oid.AES256CBC), alg.Algorithm.Equal(oid.AES128CBC):
		var iv []byte
		if _, err := asn1.Unmarshal(alg.Parameters, &iv); err != nil || len(iv) != 16 {
			return nil, fmt.Errorf("bad iv")
		}
		if len(ct) == 0 || len(ct)%16 != 0 {
			return nil, fmt.Errorf("bad ciphertext length")
		}
		out := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
		pad := int(out[len(out)-1])
		if pad == 0 || pad > 16 || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
			return nil, fmt.Errorf("bad padding")
		}
		return out[:len(out)-pad], nil
	case alg.Algorithm.Equal(oid.AES256GCM), alg.Algorithm.Equal(oid.AES128GCM):
		var p struct {
			Nonce  []byte
			ICVLen int `asn1:"default:12"`
		}
		if _, err := asn1.Unmarshal(alg.Parameters, &p); err != nil {
			return nil, fmt.Errorf("bad gcm parameters: %w", err)
		}
		gcm, err := cipher.NewGCMWithNonceSize(block, len(p.Nonce))
		if err != nil {
			return nil, err
		}
		tag, err := env.Tag()
		if err != nil {
			return nil, err
		}
		var aad []byte
		if env.AuthAttrs != nil {
			aad = append([]byte{tagSet}, env.AuthAttrs[1:]...)
		}
		return gcm.Open(nil, p.Nonce, append(append([]byte(nil), ct...), tag...), aad)
	}
	return nil, fmt.Errorf("content algorithm %v", alg.Algorithm)
}

func (k *softKey) WrapAES(ctx context.Context, kek []byte) ([]byte, error) {
	return aesKeyWrap(kek, k.key[:])
}

// aesKeyWrap is RFC 3394 key wrap with the default IV, the test side's reference.
func aesKeyWrap(kek, key []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	if len(key)%8 != 0 || len(key) < 16 {
		return nil, fmt.Errorf("key of %d bytes", len(key))
	}
	n := len(key) / 8
	a := []byte{0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6, 0xa6}
	r := append([]byte(nil), key...)
	buf := make([]byte, 16)
	for j := 0; j < 6; j++ {
		for i := 0; i < n; i++ {
			copy(buf, a)
			copy(buf[8:], r[8*i:8*i+8])
			block.Encrypt(buf, buf)
			t := uint64(n*j + i + 1)
			copy(a, buf[:8])
			for b := 0; b < 8; b++ {
				a[7-b] ^= byte(t >> (8 * b))
			}
			copy(r[8*i:], buf[8:])
		}
	}
	return append(a, r...), nil
}
