package cms

import (
	"context"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// KeyAgreeKey is one RecipientEncryptedKey of a KeyAgreeRecipientInfo: the recipient's
// identifier (Issuer and Serial, or SubjectKeyID) and the content key wrapped for it.
type KeyAgreeKey struct {
	Issuer       []byte
	Serial       *big.Int
	SubjectKeyID []byte
	EncryptedKey []byte
}

// KeyAgreeOptions chooses the identifier a KeyAgreeRecipientInfo names the certificate by.
type KeyAgreeOptions struct {
	ID RecipientIDKind
}

// kekSize is the key-encryption key of id-aes256-wrap: the content keys are AES-256, and
// OpenSSL picks the wrap of the content cipher's key size.
const kekSize = 32

// IsKeyAgree reports whether cert's key is one [KeyAgreeRecipient] wraps for: an EC key on P-256
// or P-384. Whether its keyUsage allows keyAgreement is the caller's check.
func IsKeyAgree(cert *x509.Certificate) bool {
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		return false // the common RSA certificate: no error made to say so
	}
	_, err := ecdhPublic(cert)
	return err == nil
}

func ecdhPublic(cert *x509.Certificate) (*ecdh.PublicKey, error) {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T public key", ErrUnsupported, cert.PublicKey)
	}
	switch pub.Curve {
	case elliptic.P256(), elliptic.P384():
	default:
		return nil, fmt.Errorf("%w: curve %s", ErrUnsupported, pub.Curve.Params().Name)
	}
	return pub.ECDH()
}

// KeyAgreeRecipient wraps key for cert's EC public key (P-256 or P-384) and returns the
// KeyAgreeRecipientInfo (RFC 5753 ephemeral-static ECDH): a fresh ephemeral key pair from
// crypto/rand for this RecipientInfo alone, the shared secret through the X9.63 KDF with SHA-256
// and ECC-CMS-SharedInfo naming id-aes256-wrap, and the content key wrapped under the derived
// key by key.WrapAES, so the content key itself never leaves its holder. The ephemeral private
// key and the derived key exist only for this call.
func KeyAgreeRecipient(ctx context.Context, key ContentKey, cert *x509.Certificate, opts KeyAgreeOptions) (*RecipientInfo, error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("failed to make recipientinfo: no certificate or key")
	}
	pub, err := ecdhPublic(cert)
	if err != nil {
		return nil, fmt.Errorf("failed to make recipientinfo for %q: %w", cert.Subject.String(), err)
	}
	ri := &RecipientInfo{Kind: KeyAgree, Version: 3}
	switch opts.ID {
	case IssuerAndSerial:
		ri.Issuer, ri.Serial = cert.RawIssuer, cert.SerialNumber
	case SubjectKeyID:
		if len(cert.SubjectKeyId) == 0 {
			return nil, fmt.Errorf("failed to make recipientinfo for %q: %w", cert.Subject.String(), ErrNoSubjectKeyID)
		}
		ri.SubjectKeyID = cert.SubjectKeyId
	default:
		return nil, fmt.Errorf("failed to make recipientinfo for %q: %w: id kind %d", cert.Subject.String(), ErrUnsupported, opts.ID)
	}
	eph, err := pub.Curve().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("failed to make ephemeral key for %q: %w", cert.Subject.String(), err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("failed to agree key for %q: %w", cert.Subject.String(), err)
	}
	wrapAlg := AlgorithmIdentifier{Algorithm: oid.AES256Wrap}
	kek, err := x963KDF(z, wrapAlg, kekSize)
	clear(z)
	if err != nil {
		return nil, err
	}
	wrapped, err := key.WrapAES(ctx, kek)
	clear(kek)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap key for %q: %w", cert.Subject.String(), err)
	}
	if n := len(wrapped); n != 24 && n != 32 && n != 40 {
		// An AES key of 16, 24 or 32 bytes (a list passes on posts' AES-128 keys) plus 8.
		return nil, fmt.Errorf("failed to wrap key for %q: %d bytes for an AES key", cert.Subject.String(), len(wrapped))
	}
	ri.EncryptedKey = wrapped
	ri.Keys = []KeyAgreeKey{{Issuer: ri.Issuer, Serial: ri.Serial, SubjectKeyID: ri.SubjectKeyID, EncryptedKey: wrapped}}
	params, err := marshalAlgorithm(wrapAlg)
	if err != nil {
		return nil, err
	}
	ri.KeyEncryptionAlgorithm = AlgorithmIdentifier{Algorithm: oid.DHSinglePassStdDHSHA256KDF, Parameters: params}
	ri.OriginatorKey = eph.PublicKey().Bytes()
	if ri.Raw, err = ri.marshalKeyAgree(); err != nil {
		return nil, fmt.Errorf("failed to encode recipientinfo for %q: %w", cert.Subject.String(), err)
	}
	return ri, nil
}

// x963KDF derives size bytes from the shared secret z (ANSI X9.63 KDF with SHA-256, RFC 5753
// section 7.2), with ECC-CMS-SharedInfo { keyInfo wrapAlg, suppPubInfo size in bits } as the
// shared info: no ukm, as OpenSSL writes none.
func x963KDF(z []byte, wrapAlg AlgorithmIdentifier, size int) ([]byte, error) {
	info, err := sharedInfo(wrapAlg, nil, size)
	if err != nil {
		return nil, err
	}
	return x963(crypto.SHA256, z, info, size), nil
}

func marshalAlgorithm(a AlgorithmIdentifier) ([]byte, error) {
	var b cryptobyte.Builder
	addAlgorithm(&b, a)
	return b.Bytes()
}

// marshalKeyAgree encodes [1] KeyAgreeRecipientInfo { version 3, originator [0] { originatorKey
// [1] { id-ecPublicKey (parameters absent, as OpenSSL writes), BIT STRING point } },
// keyEncryptionAlgorithm, recipientEncryptedKeys { { rid, encryptedKey } } }.
func (ri *RecipientInfo) marshalKeyAgree() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addAlgorithm(b, AlgorithmIdentifier{Algorithm: oid.ECPublicKey})
				b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
					b.AddUint8(0)
					b.AddBytes(ri.OriginatorKey)
				})
			})
		})
		addAlgorithm(b, ri.KeyEncryptionAlgorithm)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if ri.SubjectKeyID != nil {
					b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(ri.SubjectKeyID)
					})
				} else {
					addIssuerAndSerial(b, cbasn1.SEQUENCE, ri.Issuer, ri.Serial)
				}
				b.AddASN1OctetString(ri.EncryptedKey)
			})
		})
	})
	return b.Bytes()
}

// parseKeyAgree reads a KeyAgreeRecipientInfo's fields after the version (cs[1:]): the
// key-encryption algorithm and each RecipientEncryptedKey's identifier and key. The originator
// and ukm stay in Raw, which is what passes on. When every key names one certificate (OpenSSL
// writes one key per RecipientInfo), ri's Issuer and Serial or SubjectKeyID name it, so the
// RecipientInfo is attributed like a key transport one ([RecipientInfo.IDKey]).
func (ri *RecipientInfo) parseKeyAgree(cs []elem) error {
	if ri.Version != 3 {
		return fmt.Errorf("%w: keyagreerecipientinfo v%d", ErrUnsupported, ri.Version)
	}
	if len(cs) != 4 && len(cs) != 5 {
		return fmt.Errorf("%w: keyagreerecipientinfo with %d fields", ErrMalformed, len(cs))
	}
	if !cs[1].is(classContext, 0) || !cs[1].constructed {
		return fmt.Errorf("%w: originator is %s", ErrMalformed, cs[1].describe())
	}
	if len(cs) == 5 && !cs[2].is(classContext, 1) {
		return fmt.Errorf("%w: ukm is %s", ErrMalformed, cs[2].describe())
	}
	var err error
	if ri.KeyEncryptionAlgorithm, err = cs[len(cs)-2].algorithm(6); err != nil {
		return err
	}
	reks := cs[len(cs)-1]
	if !reks.isUniversal(16) || !reks.constructed {
		return fmt.Errorf("%w: recipientEncryptedKeys is %s", ErrMalformed, reks.describe())
	}
	for rest := reks.body; len(rest) > 0; {
		var rek elem
		if rek, rest, err = readElem(rest, 6); err != nil {
			return err
		}
		var buf [2]elem
		f, err := rek.appendChildren(buf[:0], 7)
		if err != nil {
			return err
		}
		if !rek.isUniversal(16) || len(f) != 2 || !f[1].isUniversal(4) {
			return fmt.Errorf("%w: recipientEncryptedKey", ErrMalformed)
		}
		var k KeyAgreeKey
		switch rid := f[0]; {
		case rid.isUniversal(16):
			var buf [2]elem
			is, err := rid.appendChildren(buf[:0], 8)
			if err != nil {
				return err
			}
			if len(is) != 2 || !is[0].isUniversal(16) {
				return fmt.Errorf("%w: issuerAndSerialNumber", ErrMalformed)
			}
			k.Issuer = is[0].raw
			if k.Serial, err = is[1].bigInt(); err != nil {
				return err
			}
		case rid.is(classContext, 0) && rid.constructed:
			// rKeyId [0] IMPLICIT RecipientKeyIdentifier { subjectKeyIdentifier, date, other }
			var buf [3]elem
			rk, err := rid.appendChildren(buf[:0], 8)
			if err != nil {
				return err
			}
			if len(rk) == 0 || !rk[0].isUniversal(4) {
				return fmt.Errorf("%w: recipientKeyIdentifier", ErrMalformed)
			}
			if k.SubjectKeyID, err = rk[0].octets(9); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: key agreement recipient identifier is %s", ErrMalformed, rid.describe())
		}
		if k.EncryptedKey, err = f[1].octets(8); err != nil {
			return err
		}
		ri.Keys = append(ri.Keys, k)
	}
	if len(ri.Keys) == 0 {
		return fmt.Errorf("%w: keyagreerecipientinfo without recipientEncryptedKeys", ErrMalformed)
	}
	first := ri.Keys[0]
	for _, k := range ri.Keys[1:] {
		if k.idKey() != first.idKey() {
			return nil // several recipients share it: no one identifier names it
		}
	}
	ri.Issuer, ri.Serial, ri.SubjectKeyID, ri.EncryptedKey = first.Issuer, first.Serial, first.SubjectKeyID, first.EncryptedKey
	return nil
}

func (k KeyAgreeKey) idKey() string {
	switch {
	case k.SubjectKeyID != nil:
		return "ski:" + string(k.SubjectKeyID)
	case k.Serial != nil:
		return "is:" + string(k.Issuer) + "\x00" + k.Serial.Text(16)
	}
	return ""
}
