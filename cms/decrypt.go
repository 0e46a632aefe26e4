package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"appliance/cms/oid"
)

// ErrNotRecipient reports an envelope with no RecipientInfo for the certificate given.
var ErrNotRecipient = errors.New("cms: no RecipientInfo for this certificate")

// DecryptWithKey decrypts an EnvelopedData or AuthEnvelopedData in software for the holder of
// key, whose certificate is cert: RSA key transport (PKCS #1 v1.5 or OAEP) or, for an EC key,
// key agreement ([RecipientInfo.KeyAgreement]), and AES-CBC or AES-GCM content, what the
// appliance and OpenSSL write. The appliance never decrypts mail it relays; this
// serves `inspect -key` (an operator holding a recipient's key file) and the tests.
func DecryptWithKey(der []byte, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	env, err := ParseEnveloped(der)
	if err != nil {
		return nil, err
	}
	cek, err := unwrapWithKey(env, cert, key)
	if err != nil {
		return nil, err
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

// unwrapWithKey finds cert's RecipientInfo and unwraps the content key with key: RSA key
// transport, or an EC key's KeyAgreeRecipientInfo (ECDH, X9.63 KDF, AES key unwrap).
func unwrapWithKey(env *Enveloped, cert *x509.Certificate, key crypto.Signer) ([]byte, error) {
	if priv, ok := key.(*ecdsa.PrivateKey); ok {
		dh, err := priv.ECDH()
		if err != nil {
			return nil, err
		}
		for _, r := range env.RecipientInfos {
			if r.Kind != KeyAgree {
				continue
			}
			ka, err := r.KeyAgreement(cert)
			if errors.Is(err, ErrNotRecipient) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if ka.Curve != dh.Curve() {
				return nil, fmt.Errorf("%w: key and certificate on different curves", ErrUnsupported)
			}
			eph, err := ka.Curve.NewPublicKey(ka.OriginatorKey)
			if err != nil {
				return nil, err
			}
			z, err := dh.ECDH(eph)
			if err != nil {
				return nil, fmt.Errorf("unwrap: %w", err)
			}
			kek := ka.KEK(z)
			clear(z)
			cek, err := aesUnwrap(kek, ka.EncryptedKey)
			clear(kek)
			if err != nil {
				return nil, fmt.Errorf("unwrap: %w", err)
			}
			return cek, nil
		}
		return nil, ErrNotRecipient
	}
	priv, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("not an rsa or ec key")
	}
	var ri *RecipientInfo
	for _, r := range env.RecipientInfos {
		if r.Matches(cert) {
			ri = r
		}
	}
	if ri == nil {
		return nil, ErrNotRecipient
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
	return cek, nil
}
