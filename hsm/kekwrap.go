package hsm

import (
	"context"
	"fmt"

	"github.com/miekg/pkcs11"
)

// kekTemplate is a key-encryption key brought to the token for one wrap: a session object
// that can only wrap, never encrypt, decrypt or leave the token again.
func kekTemplate(kek []byte) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, kek),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
	}
}

// WrapAES wraps the content key with CKM_AES_KEY_WRAP (RFC 3394) under kek, the 16- or 32-byte
// key-encryption key an ECDH agreement derived for one recipient (cms.KeyAgreeRecipient). kek
// is created on the token as a short-lived session key (C_CreateObject, CKA_TOKEN false,
// CKA_WRAP true and no other use), the content key is wrapped there with C_WrapKey, and the kek
// object is destroyed before WrapAES returns: the content key never leaves the token in clear.
func (k *CEK) WrapAES(ctx context.Context, kek []byte) ([]byte, error) {
	const op = "wrap content key with AES key wrap"
	if len(kek) != 16 && len(kek) != 32 {
		return nil, &Error{Op: op, Kind: ErrInvalidArgument, Err: fmt.Errorf("key-encryption key is %d bytes, not 16 or 32", len(kek))}
	}
	var wrapped []byte
	err := k.use(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		if !c.mechs[pkcs11.CKM_AES_KEY_WRAP] {
			// Said plainly rather than as the token's CKR_MECHANISM_INVALID; RSA recipients
			// do not need it, so a token without it is not refused at start.
			return &Error{Op: op, Kind: ErrMechanism, Err: &MechanismError{Token: k.t.cfg.name(),
				Mechanism: []uint{pkcs11.CKM_AES_KEY_WRAP}, Need: "EC (ECDH) recipients"}}
		}
		h, err := c.p11.CreateObject(s, kekTemplate(kek))
		if err != nil {
			return err
		}
		wrapped, err = c.p11.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_WRAP, nil)}, h, k.handle)
		if derr := c.p11.DestroyObject(s, h); derr != nil && err == nil {
			err = fmt.Errorf("failed to destroy key-encryption key: %w", derr)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if n := len(wrapped); n != 24 && n != 32 && n != 40 {
		// A 16-, 24- or 32-byte AES key wraps to 8 bytes more (a list re-wraps posts' AES-128 keys).
		return nil, fmt.Errorf("%s: token returned a %d-byte wrapped key", op, len(wrapped))
	}
	return wrapped, nil
}

// WrapAES is CEK.WrapAES, reporting a lost token to the supervisor.
func (k *SupervisedKey) WrapAES(ctx context.Context, kek []byte) ([]byte, error) {
	b, err := k.k.WrapAES(ctx, kek)
	return b, k.s.observe(k.epoch, err)
}
