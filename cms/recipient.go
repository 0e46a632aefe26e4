package cms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// RecipientKind is the CHOICE alternative of a RecipientInfo (RFC 5652 section 6.2).
type RecipientKind int

const (
	KeyTrans RecipientKind = iota + 1 // ktri, a SEQUENCE
	KeyAgree                          // kari [1]
	KEK                               // kekri [2]
	Password                          // pwri [3]
	Other                             // ori [4]
)

func (k RecipientKind) String() string {
	switch k {
	case KeyTrans:
		return "keytrans"
	case KeyAgree:
		return "keyagree"
	case KEK:
		return "kek"
	case Password:
		return "password"
	case Other:
		return "other"
	}
	return fmt.Sprintf("RecipientKind(%d)", int(k))
}

// RecipientIDKind selects how a KeyTransRecipientInfo names the recipient's certificate.
type RecipientIDKind int

const (
	// IssuerAndSerial makes a v0 KeyTransRecipientInfo; every client reads it (gpgsm 2.2 reads
	// nothing else).
	IssuerAndSerial RecipientIDKind = iota
	// SubjectKeyID makes a v2 KeyTransRecipientInfo naming the certificate's subjectKeyIdentifier.
	SubjectKeyID
)

// RecipientInfo is one RecipientInfo, built by [KeyTransRecipient] or [KeyAgreeRecipient], or
// read by [ParseEnveloped]. KeyTrans and KeyAgree entries have their fields decoded; the others
// are carried as Raw.
type RecipientInfo struct {
	Kind    RecipientKind
	Version int // for KeyTrans: 0 with IssuerAndSerial, 2 with SubjectKeyID; KeyAgree: 3; -1 when not decoded

	// Identifier of a KeyTrans entry: Issuer (raw Name) and Serial, or SubjectKeyID. A KeyAgree
	// entry has the identifier of its RecipientEncryptedKeys when they all name one certificate.
	Issuer       []byte
	Serial       *big.Int
	SubjectKeyID []byte

	KeyEncryptionAlgorithm AlgorithmIdentifier
	EncryptedKey           []byte

	// Keys are a KeyAgree entry's RecipientEncryptedKeys, in order.
	Keys []KeyAgreeKey
	// OriginatorKey is the ephemeral public point of a KeyAgree entry this package made.
	OriginatorKey []byte

	// Raw is the complete encoding, written as is into envelopes; the fields above describe it
	// and changing them does not change it.
	Raw []byte
}

// Matches reports whether a KeyTrans entry, or a KeyAgree entry for one certificate, names cert.
func (ri *RecipientInfo) Matches(cert *x509.Certificate) bool {
	if ri.Kind != KeyTrans && ri.Kind != KeyAgree {
		return false
	}
	if ri.SubjectKeyID != nil {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(ri.SubjectKeyID, cert.SubjectKeyId)
	}
	return ri.Serial != nil && ri.Serial.Cmp(cert.SerialNumber) == 0 && bytes.Equal(ri.Issuer, cert.RawIssuer)
}

// OAEPHash returns the hash a KeyTrans entry's key was wrapped with: 0 for rsaEncryption
// (RSAES-PKCS1-v1_5), the OAEP hash for id-RSAES-OAEP. Parameters this package would not write
// (a label, an MGF hash different from the hash) are ErrUnsupported.
func (ri *RecipientInfo) OAEPHash() (crypto.Hash, error) {
	if ri.Kind != KeyTrans {
		return 0, fmt.Errorf("%w: %v recipientinfo", ErrUnsupported, ri.Kind)
	}
	return keyTransHash(ri.KeyEncryptionAlgorithm)
}

// KeyTransOptions chooses the identifier and key-encryption algorithm of a KeyTransRecipientInfo.
type KeyTransOptions struct {
	ID RecipientIDKind
	// OAEPHash selects RSAES-OAEP with this hash for label and MGF1 (crypto.SHA1, SHA256, SHA384,
	// SHA512); 0 selects rsaEncryption (RSAES-PKCS1-v1_5).
	OAEPHash crypto.Hash
}

// KeyTransRecipient wraps key for cert's RSA public key and returns the KeyTransRecipientInfo.
// Whether cert may be used for encryption (validity, keyUsage, chain) is the caller's decision.
func KeyTransRecipient(ctx context.Context, key ContentKey, cert *x509.Certificate, opts KeyTransOptions) (*RecipientInfo, error) {
	if cert == nil || key == nil {
		return nil, fmt.Errorf("failed to make recipientinfo: no certificate or key")
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("failed to make recipientinfo for %q: %w: %T public key", cert.Subject.String(), ErrUnsupported, cert.PublicKey)
	}
	alg, err := keyTransAlgorithm(opts.OAEPHash)
	if err != nil {
		return nil, fmt.Errorf("failed to make recipientinfo for %q: %w", cert.Subject.String(), err)
	}
	ri := &RecipientInfo{Kind: KeyTrans, KeyEncryptionAlgorithm: alg}
	switch opts.ID {
	case IssuerAndSerial:
		ri.Issuer, ri.Serial = cert.RawIssuer, cert.SerialNumber
	case SubjectKeyID:
		if len(cert.SubjectKeyId) == 0 {
			return nil, fmt.Errorf("failed to make recipientinfo for %q: %w", cert.Subject.String(), ErrNoSubjectKeyID)
		}
		ri.Version, ri.SubjectKeyID = 2, cert.SubjectKeyId
	default:
		return nil, fmt.Errorf("failed to make recipientinfo for %q: %w: id kind %d", cert.Subject.String(), ErrUnsupported, opts.ID)
	}
	wrapped, err := key.WrapRSA(ctx, pub, opts.OAEPHash)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap key for %q: %w", cert.Subject.String(), err)
	}
	if len(wrapped) != pub.Size() {
		return nil, fmt.Errorf("failed to wrap key for %q: %d bytes for a %d-byte modulus", cert.Subject.String(), len(wrapped), pub.Size())
	}
	ri.EncryptedKey = wrapped
	if ri.Raw, err = ri.marshalKeyTrans(); err != nil {
		return nil, fmt.Errorf("failed to encode recipientinfo for %q: %w", cert.Subject.String(), err)
	}
	return ri, nil
}

func (ri *RecipientInfo) marshalKeyTrans() ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(int64(ri.Version))
		if ri.SubjectKeyID != nil {
			b.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ri.SubjectKeyID) })
		} else {
			addIssuerAndSerial(b, cbasn1.SEQUENCE, ri.Issuer, ri.Serial)
		}
		addAlgorithm(b, ri.KeyEncryptionAlgorithm)
		b.AddASN1OctetString(ri.EncryptedKey)
	})
	return b.Bytes()
}

func addIssuerAndSerial(b *cryptobyte.Builder, tag cbasn1.Tag, issuer []byte, serial *big.Int) {
	b.AddASN1(tag, func(b *cryptobyte.Builder) {
		b.AddBytes(issuer)
		b.AddASN1BigInt(serial)
	})
}

func addAlgorithm(b *cryptobyte.Builder, a AlgorithmIdentifier) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(a.Algorithm)
		if a.Parameters != nil {
			b.AddBytes(a.Parameters)
		}
	})
}

// nullParams is the DER NULL that rsaEncryption and RFC 4055's hash identifiers carry.
var nullParams = []byte{0x05, 0x00}

var hashOIDs = map[crypto.Hash]asn1.ObjectIdentifier{
	crypto.SHA1:   oid.SHA1,
	crypto.SHA256: oid.SHA256,
	crypto.SHA384: oid.SHA384,
	crypto.SHA512: oid.SHA512,
}

func hashByOID(o asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for h, ho := range hashOIDs {
		if ho.Equal(o) {
			return h, true
		}
	}
	return 0, false
}

// keyTransAlgorithm is the keyEncryptionAlgorithm for WrapRSA's oaepHash.
func keyTransAlgorithm(h crypto.Hash) (AlgorithmIdentifier, error) {
	if h == 0 {
		return AlgorithmIdentifier{Algorithm: oid.RSAEncryption, Parameters: nullParams}, nil
	}
	params, err := rsaHashParams(h, false)
	if err != nil {
		return AlgorithmIdentifier{}, err
	}
	return AlgorithmIdentifier{Algorithm: oid.RSAESOAEP, Parameters: params}, nil
}

// rsaHashParams encodes RSAES-OAEP-params or RSASSA-PSS-params (RFC 4055) for hash h, with MGF1
// over the same hash. SHA-1 and MGF1-SHA-1 are the DEFAULTs and so are omitted, as DER demands;
// hash identifiers carry NULL parameters as RFC 4055 section 2.1 spells them.
func rsaHashParams(h crypto.Hash, pss bool) ([]byte, error) {
	ho, ok := hashOIDs[h]
	if !ok {
		return nil, fmt.Errorf("%w: hash %v", ErrUnsupported, h)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if h != crypto.SHA1 {
			hashAlg := AlgorithmIdentifier{Algorithm: ho, Parameters: nullParams}
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addAlgorithm(b, hashAlg)
			})
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oid.MGF1)
					addAlgorithm(b, hashAlg)
				})
			})
		}
		if pss && h.Size() != 20 {
			b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1Int64(int64(h.Size()))
			})
		}
	})
	return b.Bytes()
}

// keyTransHash decodes a keyEncryptionAlgorithm back to WrapRSA's oaepHash.
func keyTransHash(a AlgorithmIdentifier) (crypto.Hash, error) {
	switch {
	case a.Algorithm.Equal(oid.RSAEncryption):
		return 0, nil
	case a.Algorithm.Equal(oid.RSAESOAEP):
		return parseOAEPParams(a.Parameters)
	}
	return 0, fmt.Errorf("%w: key encryption algorithm %v", ErrUnsupported, a.Algorithm)
}

// parseOAEPParams reads RSAES-OAEP-params, accepting absent or NULL hash parameters (RFC 4055
// requires both to be accepted) and refusing labels.
func parseOAEPParams(p []byte) (crypto.Hash, error) {
	if len(p) == 0 {
		return crypto.SHA1, nil // parameters absent: all defaults
	}
	e, rest, err := readElem(p, 0)
	if err != nil {
		return 0, err
	}
	if len(rest) != 0 || !e.isUniversal(16) {
		return 0, fmt.Errorf("%w: RSAES-OAEP-params", ErrMalformed)
	}
	fields, err := e.children(0)
	if err != nil {
		return 0, err
	}
	hash, mgfHash := crypto.SHA1, crypto.SHA1
	for _, f := range fields {
		if f.class != classContext {
			return 0, fmt.Errorf("%w: RSAES-OAEP-params field %s", ErrMalformed, f.describe())
		}
		inner, err := f.children(1)
		if err != nil {
			return 0, err
		}
		if len(inner) != 1 {
			return 0, fmt.Errorf("%w: RSAES-OAEP-params field %s", ErrMalformed, f.describe())
		}
		alg, err := inner[0].algorithm(2)
		if err != nil {
			return 0, err
		}
		switch f.tag {
		case 0:
			h, ok := hashByOID(alg.Algorithm)
			if !ok {
				return 0, fmt.Errorf("%w: oaep hash %v", ErrUnsupported, alg.Algorithm)
			}
			hash = h
		case 1:
			if !alg.Algorithm.Equal(oid.MGF1) {
				return 0, fmt.Errorf("%w: oaep mask generation %v", ErrUnsupported, alg.Algorithm)
			}
			me, _, err := readElem(alg.Parameters, 2)
			if err != nil {
				return 0, err
			}
			ma, err := me.algorithm(3)
			if err != nil {
				return 0, err
			}
			h, ok := hashByOID(ma.Algorithm)
			if !ok {
				return 0, fmt.Errorf("%w: mgf1 hash %v", ErrUnsupported, ma.Algorithm)
			}
			mgfHash = h
		case 2:
			// pSpecified with an empty label is the default; anything else is a label.
			if !alg.Algorithm.Equal(oid.PSpecified) || !(len(alg.Parameters) == 2 && alg.Parameters[0] == tagOctetString && alg.Parameters[1] == 0) {
				return 0, fmt.Errorf("%w: oaep label", ErrUnsupported)
			}
		default:
			return 0, fmt.Errorf("%w: RSAES-OAEP-params field %s", ErrMalformed, f.describe())
		}
	}
	if hash != mgfHash {
		return 0, fmt.Errorf("%w: oaep hash %v with mgf1 %v", ErrUnsupported, hash, mgfHash)
	}
	return hash, nil
}
