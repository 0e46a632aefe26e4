package smime

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"appliance/cms"
	"appliance/cms/oid"
)

// Inspection with a recipient's key. The appliance never decrypts mail it relays; `inspect
// -key` does, in software, for an operator who holds a recipient's private key file and wants
// to see what a package's recipients read: the protected header inside (RFC 9788). Only RSA
// key transport and AES content are read, which is what the appliance writes.

// ErrNotForKey reports a package with no RecipientInfo for the certificate given.
var ErrNotForKey = errors.New("smime: no RecipientInfo for this key")

// OpenWithKey decrypts an application/pkcs7-mime package (a whole message) for the holder of
// key, whose certificate is cert, and returns the decrypted entity.
func OpenWithKey(msg []byte, cert *x509.Certificate, key *rsa.PrivateKey) ([]byte, error) {
	p, err := Parse(bytes.NewReader(msg), int64(len(msg))+1)
	if err != nil {
		return nil, err
	}
	env, err := cms.ParseEnveloped(p.DER)
	if err != nil {
		return nil, err
	}
	var ri *cms.RecipientInfo
	for _, r := range env.RecipientInfos {
		if r.Matches(cert) {
			ri = r
		}
	}
	if ri == nil {
		return nil, ErrNotForKey
	}
	h, err := ri.OAEPHash()
	if err != nil {
		return nil, err
	}
	var cek []byte
	if h == 0 {
		cek, err = rsa.DecryptPKCS1v15(nil, key, ri.EncryptedKey)
	} else {
		cek, err = rsa.DecryptOAEP(h.New(), nil, key, ri.EncryptedKey, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap the content key: %w", err)
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
		if _, err := asn1.Unmarshal(alg.Parameters, &iv); err != nil || len(iv) != aes.BlockSize {
			return nil, fmt.Errorf("failed to decrypt: bad CBC parameters")
		}
		if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
			return nil, fmt.Errorf("failed to decrypt: ciphertext length %d", len(ct))
		}
		out := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ct)
		pad := int(out[len(out)-1])
		if pad == 0 || pad > aes.BlockSize || !bytes.Equal(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) {
			return nil, fmt.Errorf("failed to decrypt: bad padding")
		}
		return out[:len(out)-pad], nil
	case alg.Algorithm.Equal(oid.AES256GCM), alg.Algorithm.Equal(oid.AES128GCM):
		var prm struct {
			Nonce  []byte
			ICVLen int `asn1:"default:12"`
		}
		if _, err := asn1.Unmarshal(alg.Parameters, &prm); err != nil {
			return nil, fmt.Errorf("failed to decrypt: bad GCM parameters: %w", err)
		}
		gcm, err := cipher.NewGCMWithNonceSize(block, len(prm.Nonce))
		if err != nil {
			return nil, err
		}
		tag, err := env.Tag()
		if err != nil {
			return nil, err
		}
		var aad []byte
		if env.AuthAttrs != nil { // authenticated as a SET OF, not as the [1] it is written as
			aad = append([]byte{0x31}, env.AuthAttrs[1:]...)
		}
		return gcm.Open(nil, prm.Nonce, append(append([]byte(nil), ct...), tag...), aad)
	}
	return nil, fmt.Errorf("failed to decrypt: content algorithm %v", alg.Algorithm)
}
