package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"time"

	"appliance/cms/oid"
)

// maxSigners and maxCertificates bound what ParseSigned accepts from hostile input.
const (
	maxSigners      = 64
	maxCertificates = 256
)

// Signed is a parsed SignedData. Byte slices alias the input except Content when it was sent as
// a constructed OCTET STRING.
type Signed struct {
	Version      int
	Certificates []*x509.Certificate
	// ContentType is eContentType; Content is nil when the content is detached.
	ContentType asn1.ObjectIdentifier
	Content     []byte
	Signers     []*SignerInfo
}

// SignerInfo is one parsed SignerInfo.
type SignerInfo struct {
	Version int
	// Identifier: Issuer (raw Name) and Serial, or SubjectKeyID.
	Issuer       []byte
	Serial       *big.Int
	SubjectKeyID []byte

	DigestAlgorithm    AlgorithmIdentifier
	SignedAttrs        []byte // raw [0] element, nil when absent
	SignatureAlgorithm AlgorithmIdentifier
	Signature          []byte
}

// Matches reports whether si names cert.
func (si *SignerInfo) Matches(cert *x509.Certificate) bool {
	if si.SubjectKeyID != nil {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(si.SubjectKeyID, cert.SubjectKeyId)
	}
	return si.Serial != nil && si.Serial.Cmp(cert.SerialNumber) == 0 && bytes.Equal(si.Issuer, cert.RawIssuer)
}

// ParseSigned parses a ContentInfo holding SignedData, in DER or BER.
func ParseSigned(data []byte) (*Signed, error) {
	s, err := parseSigned(data)
	if err != nil {
		return nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	return s, nil
}

func parseSigned(data []byte) (*Signed, error) {
	ct, body, err := contentInfo(data)
	if err != nil {
		return nil, err
	}
	if !ct.Equal(oid.SignedData) {
		return nil, fmt.Errorf("%w: content type %v", ErrUnsupported, ct)
	}
	fs, err := body.children(2)
	if err != nil {
		return nil, err
	}
	if len(fs) < 4 {
		return nil, fmt.Errorf("%w: signed data with %d fields", ErrMalformed, len(fs))
	}
	s := &Signed{}
	if s.Version, err = fs[0].smallInt(); err != nil {
		return nil, err
	}
	if !fs[1].isUniversal(17) {
		return nil, fmt.Errorf("%w: digestAlgorithms", ErrMalformed)
	}
	eci := fs[2]
	if !eci.isUniversal(16) {
		return nil, fmt.Errorf("%w: encapContentInfo", ErrMalformed)
	}
	ecf, err := eci.children(3)
	if err != nil {
		return nil, err
	}
	if len(ecf) < 1 || len(ecf) > 2 {
		return nil, fmt.Errorf("%w: encapContentInfo with %d fields", ErrMalformed, len(ecf))
	}
	if s.ContentType, err = ecf[0].oid(); err != nil {
		return nil, err
	}
	if len(ecf) == 2 {
		inner, err := ecf[1].children(4)
		if err != nil {
			return nil, err
		}
		if !ecf[1].is(classContext, 0) || len(inner) != 1 || !inner[0].isUniversal(4) {
			return nil, fmt.Errorf("%w: eContent", ErrMalformed)
		}
		if s.Content, err = inner[0].octets(5); err != nil {
			return nil, err
		}
	}
	rest := fs[3:]
	if rest[0].is(classContext, 0) {
		certs, err := rest[0].children(3)
		if err != nil {
			return nil, err
		}
		if len(certs) > maxCertificates {
			return nil, fmt.Errorf("%w: %d certificates", ErrUnsupported, len(certs))
		}
		for _, c := range certs {
			if !c.isUniversal(16) {
				continue // other certificate formats (attribute certificates) are not listed
			}
			cert, err := x509.ParseCertificate(c.raw)
			if err != nil {
				return nil, fmt.Errorf("%w: certificate: %v", ErrMalformed, err)
			}
			s.Certificates = append(s.Certificates, cert)
		}
		rest = rest[1:]
	}
	if len(rest) > 0 && rest[0].is(classContext, 1) {
		rest = rest[1:]
	}
	if len(rest) != 1 || !rest[0].isUniversal(17) {
		return nil, fmt.Errorf("%w: signerInfos", ErrMalformed)
	}
	sis, err := rest[0].children(3)
	if err != nil {
		return nil, err
	}
	if len(sis) > maxSigners {
		return nil, fmt.Errorf("%w: %d signers", ErrUnsupported, len(sis))
	}
	for i, e := range sis {
		si, err := parseSignerInfo(e)
		if err != nil {
			return nil, fmt.Errorf("signerinfo #%d: %w", i, err)
		}
		s.Signers = append(s.Signers, si)
	}
	return s, nil
}

func parseSignerInfo(e elem) (*SignerInfo, error) {
	if !e.isUniversal(16) {
		return nil, fmt.Errorf("%w: signerinfo is %s", ErrMalformed, e.describe())
	}
	fs, err := e.children(4)
	if err != nil {
		return nil, err
	}
	if len(fs) < 5 {
		return nil, fmt.Errorf("%w: signerinfo with %d fields", ErrMalformed, len(fs))
	}
	si := &SignerInfo{}
	if si.Version, err = fs[0].smallInt(); err != nil {
		return nil, err
	}
	switch sid := fs[1]; {
	case sid.isUniversal(16):
		is, err := sid.children(5)
		if err != nil {
			return nil, err
		}
		if len(is) != 2 || !is[0].isUniversal(16) {
			return nil, fmt.Errorf("%w: issuerAndSerialNumber", ErrMalformed)
		}
		si.Issuer = is[0].raw
		if si.Serial, err = is[1].bigInt(); err != nil {
			return nil, err
		}
	case sid.is(classContext, 0):
		if si.SubjectKeyID, err = sid.octets(5); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: signer identifier is %s", ErrMalformed, sid.describe())
	}
	if si.DigestAlgorithm, err = fs[2].algorithm(5); err != nil {
		return nil, err
	}
	i := 3
	if fs[i].is(classContext, 0) {
		if fs[i].indefinite {
			return nil, fmt.Errorf("%w: signed attributes must be DER", ErrMalformed)
		}
		si.SignedAttrs = fs[i].raw
		i++
	}
	if len(fs) < i+2 {
		return nil, fmt.Errorf("%w: signerinfo fields", ErrMalformed)
	}
	if si.SignatureAlgorithm, err = fs[i].algorithm(5); err != nil {
		return nil, err
	}
	if !fs[i+1].isUniversal(4) {
		return nil, fmt.Errorf("%w: signature", ErrMalformed)
	}
	if si.Signature, err = fs[i+1].octets(5); err != nil {
		return nil, err
	}
	return si, nil
}

// VerifyOptions tunes [Signed.Verify].
type VerifyOptions struct {
	// Roots are the trust anchors; Intermediates add to the certificates in the message.
	Roots, Intermediates *x509.CertPool
	// Content is the signed content when it was detached.
	Content []byte
	// CurrentTime is the time of the chain check; zero means now.
	CurrentTime time.Time
}

// Verify checks every SignerInfo: the digest of the content against messageDigest, the
// signature over the signed attributes, and the signer's chain to opts.Roots for email
// protection. It returns the signers' certificates in SignerInfo order.
func (s *Signed) Verify(opts VerifyOptions) ([]*x509.Certificate, error) {
	content := s.Content
	if content == nil {
		content = opts.Content
	}
	if content == nil {
		return nil, fmt.Errorf("failed to verify: %w: detached content not given", ErrVerify)
	}
	if len(s.Signers) == 0 {
		return nil, fmt.Errorf("failed to verify: %w: no signers", ErrVerify)
	}
	inter := x509.NewCertPool()
	if opts.Intermediates != nil {
		inter = opts.Intermediates.Clone()
	}
	for _, c := range s.Certificates {
		inter.AddCert(c)
	}
	var out []*x509.Certificate
	for i, si := range s.Signers {
		var cert *x509.Certificate
		for _, c := range s.Certificates {
			if si.Matches(c) {
				cert = c
				break
			}
		}
		if cert == nil {
			return nil, fmt.Errorf("failed to verify signer #%d: %w: certificate not in message", i, ErrVerify)
		}
		if err := si.verify(cert, content); err != nil {
			return nil, fmt.Errorf("failed to verify signer %q: %w", cert.Subject.String(), err)
		}
		_, err := cert.Verify(x509.VerifyOptions{
			Roots: opts.Roots, Intermediates: inter, CurrentTime: opts.CurrentTime,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		})
		if err != nil {
			return nil, fmt.Errorf("failed to verify chain of %q: %w: %w", cert.Subject.String(), ErrVerify, err)
		}
		out = append(out, cert)
	}
	return out, nil
}

func (si *SignerInfo) verify(cert *x509.Certificate, content []byte) error {
	h, ok := hashByOID(si.DigestAlgorithm.Algorithm)
	if !ok {
		return fmt.Errorf("%w: digest %v", ErrUnsupported, si.DigestAlgorithm.Algorithm)
	}
	md := h.New()
	md.Write(content)
	digest := md.Sum(nil)
	signed := content
	if si.SignedAttrs != nil {
		if err := checkAttrs(si.SignedAttrs, digest); err != nil {
			return err
		}
		// The signature is over the attributes as a SET OF, not with the [0] they travel under.
		signed = append([]byte{tagSet}, si.SignedAttrs[1:]...)
	}
	md = h.New()
	md.Write(signed)
	return checkSignature(cert.PublicKey, si.SignatureAlgorithm, h, md.Sum(nil), si.Signature)
}

func checkAttrs(raw []byte, digest []byte) error {
	e, _, err := readElem(raw, 5)
	if err != nil {
		return err
	}
	attrs, err := e.children(5)
	if err != nil {
		return err
	}
	var haveCT, haveMD bool
	for _, a := range attrs {
		f, err := a.children(6)
		if err != nil {
			return err
		}
		if len(f) != 2 || !f[1].isUniversal(17) {
			return fmt.Errorf("%w: attribute", ErrMalformed)
		}
		t, err := f[0].oid()
		if err != nil {
			return err
		}
		vals, err := f[1].children(7)
		if err != nil {
			return err
		}
		switch {
		case t.Equal(oid.AttrMessageDigest):
			if len(vals) != 1 || !vals[0].isUniversal(4) {
				return fmt.Errorf("%w: messageDigest", ErrMalformed)
			}
			got, err := vals[0].octets(8)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, digest) {
				return fmt.Errorf("%w: message digest mismatch", ErrVerify)
			}
			haveMD = true
		case t.Equal(oid.AttrContentType):
			haveCT = true
		}
	}
	if !haveCT || !haveMD {
		return fmt.Errorf("%w: contentType or messageDigest attribute missing", ErrVerify)
	}
	return nil
}

func checkSignature(pub crypto.PublicKey, alg AlgorithmIdentifier, h crypto.Hash, digest, sig []byte) error {
	var err error
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch {
		case alg.Algorithm.Equal(oid.RSASSAPSS):
			// RFC 4056: the PSS hash must be the SignerInfo's digest algorithm.
			ph, perr := pssHash(alg.Parameters)
			if perr != nil {
				return perr
			}
			if ph != h {
				return fmt.Errorf("%w: pss hash %v with digest %v", ErrUnsupported, ph, h)
			}
			err = rsa.VerifyPSS(k, h, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto, Hash: h})
		case alg.Algorithm.Equal(oid.RSAEncryption), alg.Algorithm.Equal(oid.SHA256WithRSA),
			alg.Algorithm.Equal(oid.SHA384WithRSA), alg.Algorithm.Equal(oid.SHA512WithRSA):
			err = rsa.VerifyPKCS1v15(k, h, digest, sig)
		default:
			return fmt.Errorf("%w: signature algorithm %v", ErrUnsupported, alg.Algorithm)
		}
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, digest, sig) {
			err = fmt.Errorf("ecdsa signature invalid")
		}
	default:
		return fmt.Errorf("%w: %T public key", ErrUnsupported, pub)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrVerify, err)
	}
	return nil
}

// pssHash reads the hashAlgorithm of RSASSA-PSS-params (RFC 4055), SHA-1 when absent.
func pssHash(p []byte) (crypto.Hash, error) {
	e, _, err := readElem(p, 5)
	if err != nil {
		return 0, err
	}
	fields, err := e.children(5)
	if err != nil {
		return 0, err
	}
	for _, f := range fields {
		if !f.is(classContext, 0) {
			continue
		}
		inner, err := f.children(6)
		if err != nil {
			return 0, err
		}
		if len(inner) != 1 {
			return 0, fmt.Errorf("%w: RSASSA-PSS-params hash", ErrMalformed)
		}
		a, err := inner[0].algorithm(7)
		if err != nil {
			return 0, err
		}
		h, ok := hashByOID(a.Algorithm)
		if !ok {
			return 0, fmt.Errorf("%w: pss hash %v", ErrUnsupported, a.Algorithm)
		}
		return h, nil
	}
	return crypto.SHA1, nil
}
