package hsm

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/miekg/pkcs11"
)

// Ed25519 keys (RFC 8032, DKIM's ed25519-sha256 of RFC 8463) are PKCS#11 v3.0 objects: key type
// CKK_EC_EDWARDS, signing mechanism CKM_EDDSA. crypto11 1.6.2 knows neither and refuses to list
// such a key pair, so they are found and signed with through miekg/pkcs11 here, on the pool's
// sessions.
const (
	ckkECEdwards           = 0x40   // CKK_EC_EDWARDS
	ckmEdDSA               = 0x1057 // CKM_EDDSA
	ckmECEdwardsKeyPairGen = 0x1055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
)

// edwards25519Params is CKA_EC_PARAMS of an Ed25519 key: the DER of the OID 1.3.101.112 (id-Ed25519,
// RFC 8410). PKCS#11 v3.0 also allows the curve's name as a PrintableString ("edwards25519");
// SoftHSM2 2.6.1 accepts both (tried), and the OID is the encoding RFC 8410 and OpenSSL use.
var edwards25519Params = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}

// generateEd25519 makes an Ed25519 key pair on the token in session s: a private key that signs
// and never leaves the token (sensitive, not extractable), a public key that verifies, both with
// label and id.
func (c *conn) generateEd25519(s pkcs11.SessionHandle, id []byte, label string) error {
	_, _, err := c.p11.GenerateKeyPair(s,
		[]*pkcs11.Mechanism{pkcs11.NewMechanism(ckmECEdwardsKeyPairGen, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, edwards25519Params),
		},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
			pkcs11.NewAttribute(pkcs11.CKA_ID, id),
		})
	return err
}

// findEd25519 finds the private key u names if it is an Ed25519 key, and its public half (the
// CKO_PUBLIC_KEY with the same label and id). It answers a nil signer, without error, when the
// key u names is some other type or cannot be found; the caller's own lookup reports that.
func (c *conn) findEd25519(u *URI) (crypto.Signer, error) {
	s, err := c.pool.get(context.Background(), "find Ed25519 key")
	if err != nil {
		return nil, err
	}
	var priv pkcs11.ObjectHandle
	var pub ed25519.PublicKey
	err = func() error {
		priv, err = c.findObject(s, u, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		attrs, err := c.p11.GetAttributeValue(s, priv, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		})
		if err != nil {
			return err
		}
		if kt, err := ulong(attrs[0].Value); err != nil || kt != ckkECEdwards {
			return nil
		}
		// The public half shares the private key's label and id (whatever the URI gave of them).
		pu := &URI{Object: string(attrs[1].Value), ID: attrs[2].Value, Type: "public"}
		if pu.Object == "" && len(pu.ID) == 0 {
			return &Error{Op: "find Ed25519 public key", Kind: ErrKeyNotFound, Err: errors.New("the private key has neither label nor id")}
		}
		ph, err := c.findObject(s, pu, pkcs11.CKO_PUBLIC_KEY)
		if err != nil {
			return err
		}
		attrs, err = c.p11.GetAttributeValue(s, ph, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
		if err != nil {
			return err
		}
		pub, err = ed25519Point(attrs[0].Value)
		return err
	}()
	c.pool.put(s, err)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Kind == ErrKeyNotFound && pub == nil && priv == 0 {
			return nil, nil
		}
		return nil, err
	}
	if pub == nil {
		return nil, nil
	}
	always, _, err := c.alwaysAuthenticate(u)
	if err != nil {
		return nil, err
	}
	if always {
		return &authSigner{c: c, handle: priv, pub: pub}, nil
	}
	return &ed25519Signer{c: c, handle: priv, pub: pub}, nil
}

// ed25519Point reads CKA_EC_POINT of an Ed25519 public key. PKCS#11 v3.0 says it is the DER
// OCTET STRING around the 32-byte point (RFC 8410's encoding), which is what SoftHSM2 2.6.1
// stores; some tokens store the bare 32 bytes.
func ed25519Point(v []byte) (ed25519.PublicKey, error) {
	switch {
	case len(v) == 2+ed25519.PublicKeySize && v[0] == 0x04 && v[1] == ed25519.PublicKeySize:
		v = v[2:]
	case len(v) == ed25519.PublicKeySize:
	default:
		return nil, &Error{Op: "read Ed25519 public key", Kind: ErrToken, Err: fmt.Errorf("CKA_EC_POINT of %d bytes", len(v))}
	}
	return ed25519.PublicKey(append([]byte(nil), v...)), nil
}

// ulong reads a CK_ULONG attribute value (native byte order, 4 or 8 bytes).
func ulong(v []byte) (uint, error) {
	if len(v) != 4 && len(v) != 8 {
		return 0, fmt.Errorf("CK_ULONG of %d bytes", len(v))
	}
	if len(v) == 4 {
		return uint(binary.NativeEndian.Uint32(v)), nil
	}
	return uint(binary.NativeEndian.Uint64(v)), nil
}

// ed25519Signer signs with an Ed25519 private key of one connection, through CKM_EDDSA.
type ed25519Signer struct {
	c      *conn
	handle pkcs11.ObjectHandle
	pub    ed25519.PublicKey
}

func (e *ed25519Signer) Public() crypto.PublicKey { return e.pub }

// Sign signs message itself (pure Ed25519, opts.HashFunc() == 0); Ed25519ph and Ed25519ctx are
// refused.
func (e *ed25519Signer) Sign(_ io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if err := pureEd25519(opts); err != nil {
		return nil, err
	}
	s, err := e.c.pool.get(context.Background(), "sign")
	if err != nil {
		return nil, err
	}
	sig, err := e.c.p11.InitAndSign(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(ckmEdDSA, nil)}, e.handle, message)
	e.c.pool.put(s, err)
	if err != nil {
		return nil, err
	}
	if len(sig) != ed25519.SignatureSize {
		return nil, &Error{Op: "sign", Kind: ErrToken, Err: fmt.Errorf("Ed25519 signature of %d bytes", len(sig))}
	}
	return sig, nil
}

func pureEd25519(opts crypto.SignerOpts) error {
	if opts != nil && opts.HashFunc() != 0 {
		return &Error{Op: "sign", Kind: ErrInvalidArgument, Err: errors.New("Ed25519 signs the message itself, not a digest (Ed25519ph is not supported)")}
	}
	if o, ok := opts.(*ed25519.Options); ok && o.Context != "" {
		return &Error{Op: "sign", Kind: ErrInvalidArgument, Err: errors.New("Ed25519ctx is not supported")}
	}
	return nil
}
