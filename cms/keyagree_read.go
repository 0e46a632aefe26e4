package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// KeyAgreement is one KeyAgreeRecipientInfo entry read for the holder of the recipient's EC
// private key (RFC 5753 ephemeral-static ECDH): what that holder needs to agree on the shared
// secret, derive the key-encryption key and unwrap the content key, wherever the private key is
// kept (an HSM). [RecipientInfo.KeyAgreement] reads it.
type KeyAgreement struct {
	// Curve is the recipient's curve (P-256 or P-384).
	Curve ecdh.Curve
	// OriginatorKey is the sender's ephemeral public key, an uncompressed point (0x04 || X || Y)
	// checked to lie on Curve.
	OriginatorKey []byte
	// Hash is the ANSI X9.63 KDF's hash (SHA-1, SHA-224, SHA-256, SHA-384 or SHA-512).
	Hash crypto.Hash
	// SharedInfo is the DER ECC-CMS-SharedInfo { keyInfo (the wrap algorithm), entityUInfo (the
	// ukm, when the entry has one), suppPubInfo (the key-encryption key's length in bits) }, the
	// KDF's SharedInfo (RFC 5753 section 7.2).
	SharedInfo []byte
	// KEKSize is the length of the key-encryption key in bytes: 16, 24 or 32 (id-aes128-wrap,
	// id-aes192-wrap, id-aes256-wrap).
	KEKSize int
	// EncryptedKey is the content key under AES key wrap (RFC 3394, no padding) with the KEK.
	EncryptedKey []byte
}

// KEK derives the key-encryption key from z, the x-coordinate of the ECDH result (ANSI X9.63
// KDF: Hash(z || counter || SharedInfo) for counter 1, 2, ... truncated to KEKSize).
func (ka *KeyAgreement) KEK(z []byte) []byte {
	return x963(ka.Hash, z, ka.SharedInfo, ka.KEKSize)
}

// x963 is the ANSI X9.63 KDF (SEC 1 section 3.6.1) with hash h.
func x963(h crypto.Hash, z, info []byte, size int) []byte {
	out := make([]byte, 0, size+h.Size())
	for counter := uint32(1); len(out) < size; counter++ {
		d := h.New()
		d.Write(z)
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], counter)
		d.Write(c[:])
		d.Write(info)
		out = d.Sum(out)
	}
	return out[:size]
}

// kdfSchemes maps the key-encryption algorithms of RFC 5753 section 7.1.4 to their KDF hash. The
// cofactor schemes agree on the same secret as the standard ones on the curves read here, whose
// cofactor is 1.
var kdfSchemes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{
	{oid.DHSinglePassStdDHSHA1KDF, crypto.SHA1},
	{oid.DHSinglePassStdDHSHA224KDF, crypto.SHA224},
	{oid.DHSinglePassStdDHSHA256KDF, crypto.SHA256},
	{oid.DHSinglePassStdDHSHA384KDF, crypto.SHA384},
	{oid.DHSinglePassStdDHSHA512KDF, crypto.SHA512},
	{oid.DHSinglePassCofactorDHSHA1KDF, crypto.SHA1},
	{oid.DHSinglePassCofactorDHSHA224KDF, crypto.SHA224},
	{oid.DHSinglePassCofactorDHSHA256KDF, crypto.SHA256},
	{oid.DHSinglePassCofactorDHSHA384KDF, crypto.SHA384},
	{oid.DHSinglePassCofactorDHSHA512KDF, crypto.SHA512},
}

// KeyAgreement reads a KeyAgree entry for cert, the recipient's EC certificate (P-256 or P-384):
// the RecipientEncryptedKey naming cert, the originator's ephemeral public key, the ukm, the KDF
// and the wrap algorithm, with the KDF's SharedInfo built from them. An entry with no key for
// cert gives [ErrNotRecipient]; one this package cannot use (a static originator key, another
// curve, an unknown KDF or wrap) [ErrUnsupported]; one that does not parse, or whose
// originator key is not a point on the curve, [ErrMalformed]. The input is untrusted mail.
func (ri *RecipientInfo) KeyAgreement(cert *x509.Certificate) (*KeyAgreement, error) {
	if ri.Kind != KeyAgree {
		return nil, fmt.Errorf("%w: %v recipientinfo", ErrUnsupported, ri.Kind)
	}
	if cert == nil {
		return nil, errors.New("cms: no certificate")
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T certificate key for a keyagreerecipientinfo", ErrUnsupported, cert.PublicKey)
	}
	var curve ecdh.Curve
	var curveOID asn1.ObjectIdentifier
	switch pub.Curve {
	case elliptic.P256():
		curve, curveOID = ecdh.P256(), oid.P256
	case elliptic.P384():
		curve, curveOID = ecdh.P384(), oid.P384
	default:
		return nil, fmt.Errorf("%w: curve %s", ErrUnsupported, pub.Curve.Params().Name)
	}
	e, _, err := readElem(ri.Raw, 0)
	if err != nil {
		return nil, err
	}
	cs, err := e.children(1)
	if err != nil {
		return nil, err
	}
	if ri.Version != 3 || (len(cs) != 4 && len(cs) != 5) {
		return nil, fmt.Errorf("%w: keyagreerecipientinfo", ErrMalformed)
	}
	ka := &KeyAgreement{Curve: curve}
	for _, k := range ri.Keys {
		if k.names(cert) {
			ka.EncryptedKey = k.EncryptedKey
			break
		}
	}
	if ka.EncryptedKey == nil {
		return nil, ErrNotRecipient
	}
	if ka.OriginatorKey, err = originatorKey(cs[1], curveOID); err != nil {
		return nil, err
	}
	if _, err := curve.NewPublicKey(ka.OriginatorKey); err != nil {
		return nil, fmt.Errorf("%w: originator key: %v", ErrMalformed, err)
	}
	var ukm []byte
	if len(cs) == 5 {
		// ukm [1] EXPLICIT UserKeyingMaterial (OCTET STRING)
		u, err := cs[2].children(2)
		if err != nil {
			return nil, err
		}
		if len(u) != 1 || !u[0].isUniversal(4) {
			return nil, fmt.Errorf("%w: ukm", ErrMalformed)
		}
		if ukm, err = u[0].octets(3); err != nil {
			return nil, err
		}
	}
	kea := ri.KeyEncryptionAlgorithm
	for _, s := range kdfSchemes {
		if s.oid.Equal(kea.Algorithm) {
			ka.Hash = s.hash
		}
	}
	if ka.Hash == 0 {
		return nil, fmt.Errorf("%w: key agreement algorithm %v", ErrUnsupported, kea.Algorithm)
	}
	// KeyWrapAlgorithm ::= AlgorithmIdentifier, the parameters of the key agreement algorithm.
	we, rest, err := readElem(kea.Parameters, 1)
	if err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("%w: key wrap algorithm", ErrMalformed)
	}
	wrap, err := we.algorithm(2)
	if err != nil {
		return nil, err
	}
	switch {
	case wrap.Algorithm.Equal(oid.AES128Wrap):
		ka.KEKSize = 16
	case wrap.Algorithm.Equal(oid.AES192Wrap):
		ka.KEKSize = 24
	case wrap.Algorithm.Equal(oid.AES256Wrap):
		ka.KEKSize = 32
	default:
		return nil, fmt.Errorf("%w: key wrap algorithm %v", ErrUnsupported, wrap.Algorithm)
	}
	if n := len(ka.EncryptedKey); n%8 != 0 || n < 24 || n > 40 {
		return nil, fmt.Errorf("%w: %d-byte wrapped key", ErrMalformed, n)
	}
	if ka.SharedInfo, err = sharedInfo(wrap, ukm, ka.KEKSize); err != nil {
		return nil, err
	}
	return ka, nil
}

// names reports whether the RecipientEncryptedKey's identifier names cert.
func (k KeyAgreeKey) names(cert *x509.Certificate) bool {
	if k.SubjectKeyID != nil {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(k.SubjectKeyID, cert.SubjectKeyId)
	}
	return k.Serial != nil && k.Serial.Cmp(cert.SerialNumber) == 0 && bytes.Equal(k.Issuer, cert.RawIssuer)
}

// originatorKey reads originator [0] EXPLICIT OriginatorIdentifierOrKey, which must be the
// originatorKey [1] { algorithm id-ecPublicKey (parameters absent, NULL or the curve),
// publicKey BIT STRING }: the ephemeral-static scheme. A certificate as originator (static-static
// ECDH) is not what S/MIME clients write.
func originatorKey(o elem, curveOID asn1.ObjectIdentifier) ([]byte, error) {
	cs, err := o.children(2)
	if err != nil {
		return nil, err
	}
	if len(cs) != 1 {
		return nil, fmt.Errorf("%w: originator", ErrMalformed)
	}
	if !cs[0].is(classContext, 1) || !cs[0].constructed {
		return nil, fmt.Errorf("%w: originator is %s, not an ephemeral public key", ErrUnsupported, cs[0].describe())
	}
	f, err := cs[0].children(3)
	if err != nil {
		return nil, err
	}
	if len(f) != 2 || !f[1].isUniversal(3) || f[1].constructed {
		return nil, fmt.Errorf("%w: originator public key", ErrMalformed)
	}
	alg, err := f[0].algorithm(4)
	if err != nil {
		return nil, err
	}
	if !alg.Algorithm.Equal(oid.ECPublicKey) {
		return nil, fmt.Errorf("%w: originator key algorithm %v", ErrUnsupported, alg.Algorithm)
	}
	if p := alg.Parameters; p != nil && !bytes.Equal(p, nullParams) {
		var named asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(p, &named); err != nil || len(rest) != 0 || !named.Equal(curveOID) {
			return nil, fmt.Errorf("%w: originator key on another curve than the certificate's", ErrUnsupported)
		}
	}
	bits := f[1].body
	if len(bits) < 2 || bits[0] != 0 {
		return nil, fmt.Errorf("%w: originator public key bits", ErrMalformed)
	}
	return bits[1:], nil
}

// sharedInfo encodes ECC-CMS-SharedInfo (RFC 5753 section 7.2) as OpenSSL does: keyInfo is the
// wrap algorithm, entityUInfo [0] the ukm when there is one, suppPubInfo [2] the KEK's length in
// bits as a 4-byte big-endian OCTET STRING.
func sharedInfo(wrap AlgorithmIdentifier, ukm []byte, kekSize int) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addAlgorithm(b, wrap)
		if ukm != nil {
			b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
		b.AddASN1(cbasn1.Tag(2).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			var bits [4]byte
			binary.BigEndian.PutUint32(bits[:], uint32(kekSize*8))
			b.AddASN1OctetString(bits[:])
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("failed to encode shared info: %w", err)
	}
	return out, nil
}

// aesUnwrap undoes AES key wrap (RFC 3394 section 2.2.2, default IV), in software: only
// [DecryptWithKey] uses it, for a key file an operator holds.
func aesUnwrap(kek, wrapped []byte) ([]byte, error) {
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	n := len(wrapped)/8 - 1
	if len(wrapped)%8 != 0 || n < 2 {
		return nil, fmt.Errorf("%w: %d-byte wrapped key", ErrMalformed, len(wrapped))
	}
	var a [8]byte
	copy(a[:], wrapped[:8])
	r := append([]byte(nil), wrapped[8:]...)
	var buf [16]byte
	for j := 5; j >= 0; j-- {
		for i := n; i >= 1; i-- {
			t := binary.BigEndian.Uint64(a[:]) ^ uint64(n*j+i)
			binary.BigEndian.PutUint64(buf[:8], t)
			copy(buf[8:], r[(i-1)*8:i*8])
			block.Decrypt(buf[:], buf[:])
			copy(a[:], buf[:8])
			copy(r[(i-1)*8:i*8], buf[8:])
		}
	}
	if binary.BigEndian.Uint64(a[:]) != 0xA6A6A6A6A6A6A6A6 {
		clear(r)
		return nil, errors.New("cms: aes key unwrap: integrity check failed")
	}
	return r, nil
}
