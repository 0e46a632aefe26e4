package hsm

import (
	"context"
	"crypto"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/miekg/pkcs11"
)

// KeyAgreement is what a post's KeyAgreeRecipientInfo (RFC 5753 ephemeral-static ECDH) gives the
// token that holds the recipient's EC private key: the sender's ephemeral public key, the
// ANSI X9.63 KDF's hash and SharedInfo, and the content key under AES key wrap with the derived
// key-encryption key. The caller has parsed it from untrusted mail.
type KeyAgreement struct {
	// OriginatorKey is the ephemeral public key, an uncompressed point (0x04 || X || Y) on the
	// curve of the private key.
	OriginatorKey []byte
	// Hash is the KDF's hash: SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512.
	Hash crypto.Hash
	// SharedInfo is the KDF's SharedInfo (for CMS the DER ECC-CMS-SharedInfo).
	SharedInfo []byte
	// KEKSize is the key-encryption key's length: 16, 24 or 32 bytes.
	KEKSize int
	// Wrapped is the content key under CKM_AES_KEY_WRAP (RFC 3394) with the KEK.
	Wrapped []byte
}

// digestMechanisms are the token's digests for the KDF hashes.
var digestMechanisms = map[crypto.Hash]uint{
	crypto.SHA1:   pkcs11.CKM_SHA_1,
	crypto.SHA224: pkcs11.CKM_SHA224,
	crypto.SHA256: pkcs11.CKM_SHA256,
	crypto.SHA384: pkcs11.CKM_SHA384,
	crypto.SHA512: pkcs11.CKM_SHA512,
}

// secretTemplate is the raw ECDH secret Z: a session object that can only be digested into the
// KDF, never read (C_DigestKey works on sensitive keys for the SHA family).
func secretTemplate() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	}
}

// unwrapKEKTemplate is the derived key-encryption key brought back to the token for one unwrap.
func unwrapKEKTemplate(kek []byte) []*pkcs11.Attribute {
	t := kekTemplate(kek)
	for i, a := range t {
		switch a.Type {
		case pkcs11.CKA_WRAP:
			t[i] = pkcs11.NewAttribute(pkcs11.CKA_WRAP, false)
		case pkcs11.CKA_UNWRAP:
			t[i] = pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, true)
		}
	}
	return t
}

// UnwrapAgreedCEK unwraps the content key of a post encrypted to the EC key pair keyURI names
// (a mailing list's P-256 key) into a new CEK on the token:
//
//  1. C_DeriveKey with CKM_ECDH1_DERIVE (CKD_NULL) and the originator's public key makes the
//     shared secret Z a sensitive, non-extractable CKK_GENERIC_SECRET session object; the
//     private key needs CKA_DERIVE.
//  2. The X9.63 KDF runs as digests on the token: for each counter, C_DigestInit, C_DigestKey(Z),
//     C_DigestUpdate(counter || SharedInfo), C_DigestFinal. Z never leaves the token; the
//     derived key-encryption key, good for this one wrapped key, does pass the process (SoftHSM
//     2.6.1 accepts no KDF but CKD_NULL in CKM_ECDH1_DERIVE and has no key-derivation digest;
//     docs/decisions.md).
//  3. The KEK is created as an unwrap-only AES session key, the content key unwrapped with
//     CKM_AES_KEY_WRAP, and Z and the KEK destroyed before UnwrapAgreedCEK returns.
//
// A post the token cannot agree or unwrap with (a point it refuses, a wrapped key that fails the
// integrity check) gives ErrUnwrap; a key without CKA_DERIVE ErrNotPermitted; a token lacking a
// mechanism ErrMechanism.
func (t *Token) UnwrapAgreedCEK(ctx context.Context, keyURI string, ka KeyAgreement) (*CEK, error) {
	op := fmt.Sprintf("unwrap agreed content key with %q", keyURI)
	if err := t.needContent(op); err != nil {
		return nil, err
	}
	u, err := ParseURI(keyURI)
	if err != nil {
		return nil, err
	}
	digest, ok := digestMechanisms[ka.Hash]
	switch {
	case !ok:
		return nil, &Error{Op: op, Kind: ErrUnwrap, Err: fmt.Errorf("KDF hash %v", ka.Hash)}
	case ka.KEKSize != 16 && ka.KEKSize != 24 && ka.KEKSize != 32:
		return nil, &Error{Op: op, Kind: ErrUnwrap, Err: fmt.Errorf("key-encryption key of %d bytes", ka.KEKSize)}
	case len(ka.OriginatorKey) == 0 || len(ka.Wrapped) == 0:
		// miekg indexes both slices' first byte.
		return nil, &Error{Op: op, Kind: ErrUnwrap, Err: errors.New("no originator key or wrapped key")}
	}
	var k *CEK
	err = t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		for _, m := range []uint{pkcs11.CKM_ECDH1_DERIVE, digest, pkcs11.CKM_AES_KEY_WRAP} {
			if !c.mechs[m] {
				return &Error{Op: op, Kind: ErrMechanism, Err: &MechanismError{Token: t.cfg.name(),
					Mechanism: []uint{m}, Need: "mail encrypted to an EC list key"}}
			}
		}
		priv, err := c.findObject(s, u, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		params := pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, ka.OriginatorKey)
		z, err := c.p11.DeriveKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE, params)}, priv, secretTemplate())
		if err != nil {
			var code pkcs11.Error
			switch {
			case errors.As(err, &code) && code == pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED:
				return &Error{Op: op, Kind: ErrNotPermitted, Err: fmt.Errorf("the key may not derive (CKA_DERIVE): %w", err)}
			case badWrapped(err) || errors.As(err, &code) && (code == pkcs11.CKR_MECHANISM_PARAM_INVALID ||
				code == pkcs11.CKR_GENERAL_ERROR) && c.healthy() == nil:
				// SoftHSM answers a point off the curve with CKR_GENERAL_ERROR.
				return &Error{Op: op, Kind: ErrUnwrap, Err: fmt.Errorf("key agreement: %w", err)}
			}
			return err
		}
		kek, err := c.x963(s, digest, z, ka.SharedInfo, ka.KEKSize)
		if derr := c.p11.DestroyObject(s, z); derr != nil && err == nil {
			err = fmt.Errorf("failed to destroy the shared secret: %w", derr)
		}
		if err != nil {
			clear(kek)
			return err
		}
		kh, err := c.p11.CreateObject(s, unwrapKEKTemplate(kek))
		clear(kek)
		if err != nil {
			return err
		}
		h, err := c.unwrapCEK(s, op, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, kh, ka.Wrapped)
		if derr := c.p11.DestroyObject(s, kh); derr != nil && err == nil {
			_ = c.p11.DestroyObject(s, h)
			err = fmt.Errorf("failed to destroy the key-encryption key: %w", derr)
		}
		if err != nil {
			return err
		}
		k = &CEK{t: t, handle: h, gen: c.gen}
		return nil
	})
	return k, err
}

// x963 runs the ANSI X9.63 KDF (SEC 1 section 3.6.1) over the secret key z on the token:
// Hash(Z || counter || info) for counter 1, 2, ... until size bytes.
func (c *conn) x963(s pkcs11.SessionHandle, digest uint, z pkcs11.ObjectHandle, info []byte, size int) ([]byte, error) {
	out := make([]byte, 0, size+64)
	for counter := uint32(1); len(out) < size; counter++ {
		if err := c.p11.DigestInit(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(digest, nil)}); err != nil {
			return out, err
		}
		if err := c.p11.DigestKey(s, z); err != nil {
			_, _ = c.p11.DigestFinal(s) // end the operation on this pooled session
			return out, err
		}
		tail := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(info)), counter)
		if err := c.p11.DigestUpdate(s, append(tail, info...)); err != nil {
			return out, err
		}
		d, err := c.p11.DigestFinal(s)
		if err != nil {
			return out, err
		}
		out = append(out, d...)
		clear(d)
	}
	clear(out[size:])
	return out[:size], nil
}

// UnwrapAgreedCEK is Token.UnwrapAgreedCEK on the current connection. A post the token refuses
// (ErrUnwrap) is the message's fault and leaves the token up.
func (s *watch) UnwrapAgreedCEK(ctx context.Context, keyURI string, ka KeyAgreement) (*SupervisedKey, error) {
	tok, epoch, err := s.current()
	if err != nil {
		return nil, err
	}
	k, err := tok.UnwrapAgreedCEK(ctx, keyURI, ka)
	if errors.Is(err, ErrUnwrap) || errors.Is(err, ErrNotPermitted) || errors.Is(err, ErrMechanism) {
		return nil, err
	}
	if err != nil {
		return nil, s.observe(epoch, err)
	}
	return &SupervisedKey{s: s, epoch: epoch, k: k}, nil
}

// UnwrapAgreedCEK unwraps a list's content key agreed with its EC key, on the token of the
// list's key (or its standby).
func (s *Supervisor) UnwrapAgreedCEK(ctx context.Context, keyURI string, ka KeyAgreement) (*SupervisedKey, error) {
	name, err := s.nameFor(keyURI)
	if err != nil {
		return nil, err
	}
	var k *SupervisedKey
	err = s.retry(name, func(w *watch, onStandby bool) error {
		uri := keyURI
		if onStandby {
			uri = withoutToken(keyURI)
		}
		k, err = w.UnwrapAgreedCEK(ctx, uri, ka)
		return err
	})
	return k, err
}
