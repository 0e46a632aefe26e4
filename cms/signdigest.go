package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// DigestSigner makes detached signatures that differ only in the digest of what they sign: one
// key, chain, signing time and set of attributes for all of them, as a mail list signs each
// member's envelope. Each signature is what [Sign] makes with the same options and
// SignOptions.Digest set, byte for byte; everything but the messageDigest attribute and the
// signature value is encoded once, in [NewDigestSigner], so a signature costs the token's
// operation, one hash of the signed attributes and one allocation. Safe for concurrent use.
type DigestSigner struct {
	signer     crypto.Signer
	signerOpts crypto.SignerOpts
	hash       crypto.Hash
	subject    string // the signer certificate's subject, for errors

	attrs  []byte // the signed attributes (SET OF) with a zero messageDigest
	mdAt   int    // where the messageDigest's value starts in attrs
	ciHead []byte // OID signedData, what precedes the [0] of the ContentInfo
	sdHead []byte // SignedData from version up to the signerInfos
	siHead []byte // SignerInfo from version up to the signed attributes
	sigAlg []byte // the SignerInfo's signatureAlgorithm

	bufs sync.Pool // *[]byte of len(attrs), for the attributes being signed
}

// NewDigestSigner checks and encodes what the signatures share. opts is as for [Sign]: Detached
// must be set, Digest left nil (each signature gives its own), and a zero SigningTime is the
// time of this call, the same for every signature.
func NewDigestSigner(signer crypto.Signer, chain []*x509.Certificate, opts SignOptions) (*DigestSigner, error) {
	if !opts.Detached || opts.Digest != nil {
		return nil, fmt.Errorf("failed to sign: a digest signer signs detached, each signature with its own digest")
	}
	p, err := planSignature(signer, chain, opts)
	if err != nil {
		return nil, err
	}
	leaf, h, hashOID, sigAlg, signerOpts := p.leaf, p.hash, p.hashOID, p.sigAlg, p.signerOpts
	if opts.SigningTime.IsZero() {
		opts.SigningTime = time.Now()
	}
	// The attributes twice, with two digests: where they differ is where each signature's goes.
	// DER orders the attributes by their encodings, which differ before the digest's value, so
	// the digest never moves an attribute.
	opts.Digest = make([]byte, h.Size())
	attrs, err := signedAttributes(h, nil, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to encode signed attributes: %w", err)
	}
	opts.Digest = bytes.Repeat([]byte{0xff}, h.Size())
	other, err := signedAttributes(h, nil, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to encode signed attributes: %w", err)
	}
	at := 0
	for at < len(attrs) && attrs[at] == other[at] {
		at++
	}
	if len(other) != len(attrs) || at+h.Size() > len(attrs) || !bytes.Equal(attrs[at+h.Size():], other[at+h.Size():]) {
		return nil, fmt.Errorf("failed to encode signed attributes: the messageDigest is not in one place")
	}

	digestAlg := AlgorithmIdentifier{Algorithm: hashOID}
	certs := make([][]byte, 0, len(chain))
	for _, c := range chain {
		certs = append(certs, c.Raw)
	}
	sortSetOf(certs)
	encode := func(f func(b *cryptobyte.Builder)) ([]byte, error) {
		var b cryptobyte.Builder
		f(&b)
		return b.Bytes()
	}
	d := &DigestSigner{signer: signer, signerOpts: signerOpts, hash: h, subject: leaf.Subject.String(), attrs: attrs, mdAt: at}
	var errs [4]error
	d.ciHead, errs[0] = encode(func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid.SignedData) })
	d.sdHead, errs[1] = encode(func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addAlgorithm(b, digestAlg) })
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oid.Data) })
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			for _, c := range certs {
				b.AddBytes(c)
			}
		})
	})
	d.siHead, errs[2] = encode(func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		addIssuerAndSerial(b, cbasn1.SEQUENCE, leaf.RawIssuer, leaf.SerialNumber)
		addAlgorithm(b, digestAlg)
	})
	d.sigAlg, errs[3] = encode(func(b *cryptobyte.Builder) { addAlgorithm(b, sigAlg) })
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("failed to encode signed data: %w", err)
		}
	}
	d.bufs.New = func() any { b := make([]byte, len(attrs)); return &b }
	return d, nil
}

// Sign makes the signature over content whose digest (of the signer's hash) is digest: a
// ContentInfo with SignedData, as [Sign] encodes it.
func (d *DigestSigner) Sign(digest []byte) ([]byte, error) {
	if len(digest) != d.hash.Size() {
		return nil, fmt.Errorf("failed to sign: a %d-byte digest for %v", len(digest), d.hash)
	}
	bp := d.bufs.Get().(*[]byte)
	attrs := *bp
	copy(attrs, d.attrs)
	copy(attrs[d.mdAt:], digest)
	// The signature covers the attributes with the SET OF tag, not the [0] they are sent with.
	md := d.hash.New()
	md.Write(attrs)
	sig, err := d.signer.Sign(rand.Reader, md.Sum(nil), d.signerOpts)
	if err != nil {
		d.bufs.Put(bp)
		return nil, fmt.Errorf("failed to sign with key of %q: %w", d.subject, err)
	}

	siLen := len(d.siHead) + len(attrs) + len(d.sigAlg) + tlvLen(len(sig))
	sdLen := len(d.sdHead) + tlvLen(tlvLen(siLen))
	ciLen := len(d.ciHead) + tlvLen(tlvLen(sdLen))
	out := make([]byte, 0, tlvLen(ciLen))
	out = appendHeader(out, tagSequence, ciLen)
	out = append(out, d.ciHead...)
	out = appendHeader(out, tagContext0, tlvLen(sdLen))
	out = appendHeader(out, tagSequence, sdLen)
	out = append(out, d.sdHead...)
	out = appendHeader(out, tagSet, tlvLen(siLen))
	out = appendHeader(out, tagSequence, siLen)
	out = append(out, d.siHead...)
	out = append(out, tagContext0)
	out = append(out, attrs[1:]...)
	out = append(out, d.sigAlg...)
	out = appendHeader(out, tagOctetString, len(sig))
	out = append(out, sig...)
	d.bufs.Put(bp)
	return out, nil
}
