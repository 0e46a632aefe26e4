package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
)

// Attribute is a signed attribute given as its type and the DER of its single value.
type Attribute struct {
	Type  asn1.ObjectIdentifier
	Value []byte
}

// SignOptions tunes [Sign]. The zero value signs with SHA-256, RSA PKCS#1 v1.5 or ECDSA as the
// key dictates, encapsulated content, signing time now and the default capabilities.
type SignOptions struct {
	// Hash is the digest: crypto.SHA256 (0 means this), SHA384 or SHA512.
	Hash crypto.Hash
	// PSS signs with RSASSA-PSS (salt length = hash length) instead of PKCS#1 v1.5; RSA keys only.
	PSS bool
	// Detached leaves the content out (multipart/signed); otherwise it is encapsulated.
	Detached bool
	// SigningTime is the signingTime attribute; zero means now.
	SigningTime time.Time
	// EncryptionCert, when set, is named in id-aa-encrypKeyPref (RFC 8551 section 2.5.3) so that
	// replies are encrypted to it.
	EncryptionCert *x509.Certificate
	// Capabilities replaces the SMIMECapabilities list (most preferred first); nil means
	// DefaultCapabilities.
	Capabilities []AlgorithmIdentifier
	// Extra signed attributes, e.g. mlExpansionHistory for a mail list agent.
	Extra []Attribute
	// Digest, when set, is the content's digest made with Hash, and content is not read (it
	// must be nil, and Detached set): a caller that writes the content as a stream hashes it
	// on the way instead of holding it whole.
	Digest []byte
}

// DefaultCapabilities are announced in SMIMECapabilities: what this appliance can decrypt if it
// ever did, and what it prefers senders to use.
var DefaultCapabilities = []AlgorithmIdentifier{
	{Algorithm: oid.AES256GCM},
	{Algorithm: oid.AES256CBC},
	{Algorithm: oid.AES128CBC},
	{Algorithm: oid.RSAESOAEP, Parameters: mustParams(crypto.SHA256)},
	{Algorithm: oid.RSAESOAEP, Parameters: mustParams(crypto.SHA1)},
	{Algorithm: oid.RSAEncryption, Parameters: nullParams},
}

func mustParams(h crypto.Hash) []byte {
	p, err := rsaHashParams(h, false)
	if err != nil {
		panic(err)
	}
	return p
}

var errNoChain = errors.New("no signer certificate")

// signaturePlan is what a signature by a signer with chain takes, checked once: the
// certificate, the digest and signature algorithms, and the options for the signer.
type signaturePlan struct {
	leaf       *x509.Certificate
	hash       crypto.Hash
	hashOID    asn1.ObjectIdentifier
	sigAlg     AlgorithmIdentifier
	signerOpts crypto.SignerOpts
}

// planSignature checks that signer holds chain[0]'s key and that opts asks for a digest and
// signature algorithm the appliance makes (SHA-256 when opts.Hash is zero; never SHA-1).
func planSignature(signer crypto.Signer, chain []*x509.Certificate, opts SignOptions) (signaturePlan, error) {
	if len(chain) == 0 || chain[0] == nil {
		return signaturePlan{}, fmt.Errorf("failed to sign: %w", errNoChain)
	}
	leaf := chain[0]
	if pk, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pk.Equal(leaf.PublicKey) {
		return signaturePlan{}, fmt.Errorf("failed to sign: key does not match certificate %q", leaf.Subject.String())
	}
	h := opts.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	hashOID, ok := hashOIDs[h]
	if !ok || h == crypto.SHA1 {
		return signaturePlan{}, fmt.Errorf("failed to sign: %w: hash %v", ErrUnsupported, h)
	}
	sigAlg, signerOpts, err := signatureAlgorithm(signer.Public(), h, opts.PSS)
	if err != nil {
		return signaturePlan{}, fmt.Errorf("failed to sign: %w", err)
	}
	return signaturePlan{leaf: leaf, hash: h, hashOID: hashOID, sigAlg: sigAlg, signerOpts: signerOpts}, nil
}

// Sign makes a ContentInfo with SignedData over content: one SignerInfo (v1, issuerAndSerialNumber
// of chain[0]), signed attributes contentType, messageDigest, signingTime, SMIMECapabilities,
// encrypKeyPref (when asked) and opts.Extra, and chain as the certificates (the signer's chain; a
// root is not needed). The signature is made by signer, which must hold chain[0]'s key.
func Sign(signer crypto.Signer, chain []*x509.Certificate, content []byte, opts SignOptions) ([]byte, error) {
	p, err := planSignature(signer, chain, opts)
	if err != nil {
		return nil, err
	}
	leaf, h, hashOID, sigAlg, signerOpts := p.leaf, p.hash, p.hashOID, p.sigAlg, p.signerOpts
	digestAlg := AlgorithmIdentifier{Algorithm: hashOID} // RFC 5754: parameters absent
	if opts.Digest != nil && (len(opts.Digest) != h.Size() || content != nil || !opts.Detached) {
		return nil, fmt.Errorf("failed to sign: a %d-byte digest for %v, with content %t and detached %t",
			len(opts.Digest), h, content != nil, opts.Detached)
	}

	attrs, err := signedAttributes(h, content, opts)
	if err != nil {
		return nil, fmt.Errorf("failed to encode signed attributes: %w", err)
	}
	// The signature covers the attributes with the SET OF tag, not the [0] they are sent with.
	md := h.New()
	md.Write(attrs)
	sig, err := signer.Sign(rand.Reader, md.Sum(nil), signerOpts)
	if err != nil {
		return nil, fmt.Errorf("failed to sign with key of %q: %w", leaf.Subject.String(), err)
	}

	certs := make([][]byte, 0, len(chain))
	size := 256 + len(attrs) + len(sig) + len(content)
	for _, c := range chain {
		certs = append(certs, c.Raw)
		size += len(c.Raw)
	}
	sortSetOf(certs)

	// Sized for the whole encoding: a list signs once per member, and growing the buffer from
	// nothing copied its certificates several times a signature.
	b := cryptobyte.NewBuilder(make([]byte, 0, size))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid.SignedData)
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { addAlgorithm(b, digestAlg) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oid.Data)
					if !opts.Detached {
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(content)
						})
					}
				})
				b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, c := range certs {
						b.AddBytes(c)
					}
				})
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						addIssuerAndSerial(b, cbasn1.SEQUENCE, leaf.RawIssuer, leaf.SerialNumber)
						addAlgorithm(b, digestAlg)
						b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddBytes(attrs[headerLenOf(attrs):])
						})
						addAlgorithm(b, sigAlg)
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("failed to encode signed data: %w", err)
	}
	return out, nil
}

// headerLenOf is the length of the identifier and length octets of the DER element der.
func headerLenOf(der []byte) int {
	if der[1] < 0x80 {
		return 2
	}
	return 2 + int(der[1]&0x7f)
}

// signatureAlgorithm picks the signatureAlgorithm and the crypto.SignerOpts for pub. RSA PKCS#1
// v1.5 is written as rsaEncryption, as OpenSSL does and every reader accepts.
func signatureAlgorithm(pub crypto.PublicKey, h crypto.Hash, pss bool) (AlgorithmIdentifier, crypto.SignerOpts, error) {
	switch pub.(type) {
	case *rsa.PublicKey:
		if pss {
			params, err := rsaHashParams(h, true)
			if err != nil {
				return AlgorithmIdentifier{}, nil, err
			}
			return AlgorithmIdentifier{Algorithm: oid.RSASSAPSS, Parameters: params},
				&rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}, nil
		}
		return AlgorithmIdentifier{Algorithm: oid.RSAEncryption, Parameters: nullParams}, h, nil
	case *ecdsa.PublicKey:
		if pss {
			return AlgorithmIdentifier{}, nil, fmt.Errorf("%w: pss with an ecdsa key", ErrUnsupported)
		}
		a := map[crypto.Hash]asn1.ObjectIdentifier{
			crypto.SHA256: oid.ECDSAWithSHA256,
			crypto.SHA384: oid.ECDSAWithSHA384,
			crypto.SHA512: oid.ECDSAWithSHA512,
		}[h]
		return AlgorithmIdentifier{Algorithm: a}, h, nil
	}
	return AlgorithmIdentifier{}, nil, fmt.Errorf("%w: %T signing key", ErrUnsupported, pub)
}

// signedAttributes returns the DER SET OF Attribute, sorted as DER requires.
func signedAttributes(h crypto.Hash, content []byte, opts SignOptions) ([]byte, error) {
	digest := opts.Digest
	if digest == nil {
		md := h.New()
		md.Write(content)
		digest = md.Sum(nil)
	}
	t := opts.SigningTime
	if t.IsZero() {
		t = time.Now()
	}
	// asn1.Marshal picks UTCTime for 1950-2049 and GeneralizedTime otherwise (RFC 5652 11.3).
	tDER, err := asn1.Marshal(t.UTC().Truncate(time.Second))
	if err != nil {
		return nil, err
	}
	var capsDER []byte
	if opts.Capabilities == nil {
		// The same for every signature (a list makes one per member).
		if capsDER, err = defaultCapsDER(); err != nil {
			return nil, err
		}
	} else if capsDER, err = capabilitiesDER(opts.Capabilities); err != nil {
		return nil, err
	}
	mdDER := appendHeader(make([]byte, 0, tlvLen(len(digest))), tagOctetString, len(digest))
	mdDER = append(mdDER, digest...)
	list := make([]Attribute, 0, 5+len(opts.Extra))
	list = append(list,
		Attribute{oid.AttrContentType, dataOIDDER},
		Attribute{oid.AttrSigningTime, tDER},
		Attribute{oid.AttrMessageDigest, mdDER},
		Attribute{oid.AttrSMIMECapabilities, capsDER},
	)
	if c := opts.EncryptionCert; c != nil {
		var kb cryptobyte.Builder
		// SMIMEEncryptionKeyPreference: issuerAndSerialNumber [0], IMPLICIT in RFC 8551's module.
		addIssuerAndSerial(&kb, cbasn1.Tag(0).Constructed().ContextSpecific(), c.RawIssuer, c.SerialNumber)
		v, err := kb.Bytes()
		if err != nil {
			return nil, err
		}
		list = append(list, Attribute{oid.AttrEncrypKeyPref, v})
	}
	for _, a := range opts.Extra {
		for _, b := range list {
			if b.Type.Equal(a.Type) {
				return nil, fmt.Errorf("attribute %v given twice", a.Type)
			}
		}
		if _, rest, err := readElem(a.Value, 0); err != nil || len(rest) != 0 {
			return nil, fmt.Errorf("attribute %v: value is not one DER element", a.Type)
		}
		list = append(list, a)
	}
	// Attribute ::= SEQUENCE { attrType OID, attrValues SET { value } }, assembled by hand into
	// one buffer: cryptobyte's nested builders cost more than the rest of a list's signature.
	encoded := make([][]byte, 0, len(list))
	size := 0
	for _, a := range list {
		oidDER, err := attrTypeDER(a.Type)
		if err != nil {
			return nil, err
		}
		inner := len(oidDER) + tlvLen(len(a.Value))
		d := make([]byte, 0, tlvLen(inner))
		d = appendHeader(d, tagSequence, inner)
		d = append(d, oidDER...)
		d = appendHeader(d, tagSet, len(a.Value))
		d = append(d, a.Value...)
		encoded = append(encoded, d)
		size += len(d)
	}
	sortSetOf(encoded)
	out := appendHeader(make([]byte, 0, tlvLen(size)), tagSet, size)
	for _, d := range encoded {
		out = append(out, d...)
	}
	return out, nil
}

// attrTypeDERs are the DER of the attribute types every signature carries.
var attrTypeDERs = func() []struct {
	oid asn1.ObjectIdentifier
	der []byte
} {
	var out []struct {
		oid asn1.ObjectIdentifier
		der []byte
	}
	for _, o := range []asn1.ObjectIdentifier{oid.AttrContentType, oid.AttrSigningTime, oid.AttrMessageDigest, oid.AttrSMIMECapabilities} {
		b, err := asn1.Marshal(o)
		if err != nil {
			panic(err)
		}
		out = append(out, struct {
			oid asn1.ObjectIdentifier
			der []byte
		}{o, b})
	}
	return out
}()

func attrTypeDER(t asn1.ObjectIdentifier) ([]byte, error) {
	for _, a := range attrTypeDERs {
		if a.oid.Equal(t) {
			return a.der, nil
		}
	}
	return asn1.Marshal(t)
}

// dataOIDDER is the DER of id-data, the contentType attribute's value.
var dataOIDDER = func() []byte {
	b, err := asn1.Marshal(oid.Data)
	if err != nil {
		panic(err)
	}
	return b
}()

// defaultCapsDER is the SMIMECapabilities value for DefaultCapabilities, encoded once.
var defaultCapsDER = sync.OnceValues(func() ([]byte, error) { return capabilitiesDER(DefaultCapabilities) })

func capabilitiesDER(caps []AlgorithmIdentifier) ([]byte, error) {
	var cb cryptobyte.Builder
	cb.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, c := range caps {
			addAlgorithm(b, c)
		}
	})
	return cb.Bytes()
}
