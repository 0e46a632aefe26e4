package metrics

import (
	"context"
	"crypto"
	"crypto/rsa"
	"io"
	"time"

	"appliance/cms"
)

// Signer counts and times s's signatures (OpSign) on the HSM.
func (m *Metrics) Signer(s crypto.Signer) crypto.Signer { return meteredSigner{Signer: s, m: m} }

// ContentKey counts and times k's operations: encryption (OpEncrypt), key wraps (OpWrap) and,
// when k offers it, Destroy (OpDestroy).
func (m *Metrics) ContentKey(k cms.ContentKey) cms.ContentKey { return meteredKey{ContentKey: k, m: m} }

type meteredSigner struct {
	crypto.Signer
	m *Metrics
}

func (s meteredSigner) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	start := time.Now()
	sig, err := s.Signer.Sign(rand, digest, opts)
	s.m.HSM(OpSign, time.Since(start), err)
	return sig, err
}

// meteredKey times a content key's operations; an encryption's time includes reading the
// plaintext, which is what sealing waits for.
type meteredKey struct {
	cms.ContentKey
	m *Metrics
}

func (k meteredKey) EncryptCBC(ctx context.Context, iv []byte, plaintext io.Reader, ciphertext io.Writer) error {
	start := time.Now()
	err := k.ContentKey.EncryptCBC(ctx, iv, plaintext, ciphertext)
	k.m.HSM(OpEncrypt, time.Since(start), err)
	return err
}

func (k meteredKey) EncryptGCM(ctx context.Context, nonce, aad []byte, plaintext io.Reader, ciphertext io.Writer) ([]byte, error) {
	start := time.Now()
	tag, err := k.ContentKey.EncryptGCM(ctx, nonce, aad, plaintext, ciphertext)
	k.m.HSM(OpEncrypt, time.Since(start), err)
	return tag, err
}

func (k meteredKey) WrapRSA(ctx context.Context, pub *rsa.PublicKey, oaepHash crypto.Hash) ([]byte, error) {
	start := time.Now()
	b, err := k.ContentKey.WrapRSA(ctx, pub, oaepHash)
	k.m.HSM(OpWrap, time.Since(start), err)
	return b, err
}

func (k meteredKey) WrapAES(ctx context.Context, kek []byte) ([]byte, error) {
	start := time.Now()
	b, err := k.ContentKey.WrapAES(ctx, kek)
	k.m.HSM(OpWrap, time.Since(start), err)
	return b, err
}

// Destroy keeps the session key's lifetime what it was: seal destroys keys that offer it.
func (k meteredKey) Destroy(ctx context.Context) error {
	d, ok := k.ContentKey.(interface{ Destroy(context.Context) error })
	if !ok {
		return nil
	}
	start := time.Now()
	err := d.Destroy(ctx)
	k.m.HSM(OpDestroy, time.Since(start), err)
	return err
}
