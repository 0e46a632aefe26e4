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
	"fmt"
	"io"
	"os"
	"testing"

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

var errNotRecipient = ErrNotRecipient

// softDecrypt is the test side's decryptor (cms.DecryptWithKey).
func softDecrypt(der []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	return DecryptWithKey(der, cert, key)
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
