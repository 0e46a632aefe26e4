package hsm

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"

	"github.com/miekg/pkcs11"
)

// A private key with CKA_ALWAYS_AUTHENTICATE (the signature key of a smartcard, typically) needs
// the PIN again for every signature: C_SignInit, then C_Login with CKU_CONTEXT_SPECIFIC, then
// C_Sign, on one session. crypto11 does not do the middle step, so such keys sign through
// miekg/pkcs11 here; the PIN is the token's, kept by the session pool already.

// alwaysAuthenticate reports whether the private key u names has CKA_ALWAYS_AUTHENTICATE set,
// and its handle.
func (c *conn) alwaysAuthenticate(u *URI) (bool, pkcs11.ObjectHandle, error) {
	s, err := c.pool.get(context.Background(), "read key attributes")
	if err != nil {
		return false, 0, err
	}
	var h pkcs11.ObjectHandle
	var always bool
	err = func() error {
		h, err = c.findObject(s, u, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		attrs, err := c.p11.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_AUTHENTICATE, nil)})
		if err != nil {
			// A token that does not know the attribute has no such keys.
			var code pkcs11.Error
			if errors.As(err, &code) && (code == pkcs11.CKR_ATTRIBUTE_TYPE_INVALID || code == pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
				return nil
			}
			return err
		}
		always = len(attrs) == 1 && len(attrs[0].Value) == 1 && attrs[0].Value[0] != 0
		return nil
	}()
	c.pool.put(s, err)
	return always, h, err
}

// authSigner signs with a CKA_ALWAYS_AUTHENTICATE key of one connection.
type authSigner struct {
	c      *conn
	handle pkcs11.ObjectHandle
	pub    crypto.PublicKey
}

func (a *authSigner) Public() crypto.PublicKey { return a.pub }

// digestInfo prefixes are the DER of DigestInfo up to the digest (RFC 8017 section 9.2 note 1).
var digestInfo = map[crypto.Hash][]byte{
	crypto.SHA1:   {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14},
	crypto.SHA224: {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c},
	crypto.SHA256: {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20},
	crypto.SHA384: {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30},
	crypto.SHA512: {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40},
}

var pssHashes = map[crypto.Hash][2]uint{
	crypto.SHA1:   {pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1},
	crypto.SHA224: {pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224},
	crypto.SHA256: {pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256},
	crypto.SHA384: {pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384},
	crypto.SHA512: {pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512},
}

func (a *authSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc()
	if h != 0 && len(digest) != h.Size() {
		return nil, &Error{Op: "sign", Kind: ErrInvalidArgument, Err: fmt.Errorf("digest is %d bytes, %v needs %d", len(digest), h, h.Size())}
	}
	var mech *pkcs11.Mechanism
	data := digest
	switch a.pub.(type) {
	case *rsa.PublicKey:
		if pss, ok := opts.(*rsa.PSSOptions); ok {
			p, ok := pssHashes[h]
			if !ok {
				return nil, &Error{Op: "sign", Kind: ErrInvalidArgument, Err: fmt.Errorf("no PSS for %v", h)}
			}
			salt := pss.SaltLength
			if salt == rsa.PSSSaltLengthAuto || salt == rsa.PSSSaltLengthEqualsHash {
				salt = h.Size()
			}
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_PSS, pkcs11.NewPSSParams(p[0], p[1], uint(salt)))
		} else {
			prefix, ok := digestInfo[h]
			if !ok {
				return nil, &Error{Op: "sign", Kind: ErrInvalidArgument, Err: fmt.Errorf("no PKCS#1 v1.5 DigestInfo for %v", h)}
			}
			data = append(append([]byte(nil), prefix...), digest...)
			mech = pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)
		}
	case *ecdsa.PublicKey:
		mech = pkcs11.NewMechanism(pkcs11.CKM_ECDSA, nil)
	case ed25519.PublicKey:
		if err := pureEd25519(opts); err != nil {
			return nil, err
		}
		mech = pkcs11.NewMechanism(ckmEdDSA, nil)
	default:
		return nil, &Error{Op: "sign", Kind: ErrInvalidArgument, Err: fmt.Errorf("unsupported key type %T", a.pub)}
	}
	return signOn(a.c.pool, a.pub, func(s pkcs11.SessionHandle) ([]byte, error) { return a.sign(s, mech, data) })
}

func (a *authSigner) sign(s pkcs11.SessionHandle, mech *pkcs11.Mechanism, data []byte) ([]byte, error) {
	if err := a.c.p11.SignInit(s, []*pkcs11.Mechanism{mech}, a.handle); err != nil {
		return nil, err
	}
	if err := a.c.p11.Login(s, pkcs11.CKU_CONTEXT_SPECIFIC, a.c.pool.pin); err != nil {
		// The operation stays initialised after a refused login; a signature of nothing ends it
		// (and fails), so the session can be used again.
		_, _ = a.c.p11.Sign(s, nil)
		return nil, err
	}
	return a.c.p11.Sign(s, data)
}
