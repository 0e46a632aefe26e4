package cms

import (
	"crypto/x509"
	"fmt"

	"appliance/cms/oid"
)

// KeepSignerCertificates re-encodes a SignedData ContentInfo (DER or BER) with only the
// certificates that name one of its signers or a certification authority, and without CRLs.
// The certificates and CRLs of SignedData are covered by no signature, and an end-entity
// certificate no signer uses can name anyone (a hidden recipient, say), so a mail list passes
// on only what a member needs to verify the signature. The signatures are unaffected. It
// returns data itself, unchanged, when there is nothing to drop; dropped counts what was
// removed.
func KeepSignerCertificates(data []byte) (out []byte, dropped int, err error) {
	ct, body, err := contentInfo(data)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if !ct.Equal(oid.SignedData) {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w: content type %v", ErrUnsupported, ct)
	}
	fs, err := body.children(2)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if len(fs) < 4 {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w: %d fields", ErrMalformed, len(fs))
	}
	var certs, crls *elem
	rest := fs[3:]
	if rest[0].is(classContext, 0) {
		certs, rest = &rest[0], rest[1:]
	}
	if len(rest) > 0 && rest[0].is(classContext, 1) {
		crls, rest = &rest[0], rest[1:]
	}
	if len(rest) != 1 || !rest[0].isUniversal(17) {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w: signerInfos", ErrMalformed)
	}
	signers := rest[0]
	sd, err := ParseSigned(data)
	if err != nil {
		return nil, 0, err
	}
	var kept [][]byte
	if certs != nil {
		cs, err := certs.children(3)
		if err != nil {
			return nil, 0, fmt.Errorf("failed to parse signed data: %w", err)
		}
		for _, c := range cs {
			if keepCert(c, sd.Signers) {
				kept = append(kept, c.raw)
			} else {
				dropped++
			}
		}
	}
	if crls != nil {
		dropped++
	}
	if dropped == 0 {
		return data, 0, nil
	}
	n := 0
	for _, k := range kept {
		n += len(k)
	}
	inner := len(fs[0].raw) + len(fs[1].raw) + len(fs[2].raw) + len(signers.raw)
	if kept != nil {
		inner += tlvLen(n)
	}
	ctDER, err := readOID(data)
	if err != nil {
		return nil, 0, fmt.Errorf("failed to parse signed data: %w", err)
	}
	explicit := tlvLen(inner)
	out = appendHeader(make([]byte, 0, tlvLen(len(ctDER)+tlvLen(explicit))), tagSequence, len(ctDER)+tlvLen(explicit))
	out = append(out, ctDER...)
	out = appendHeader(out, tagContext0, explicit)
	out = appendHeader(out, tagSequence, inner)
	out = append(append(append(out, fs[0].raw...), fs[1].raw...), fs[2].raw...)
	if kept != nil {
		out = appendHeader(out, tagContext0, n)
		for _, k := range kept {
			out = append(out, k...)
		}
	}
	return append(out, signers.raw...), dropped, nil
}

// readOID returns the raw contentType OBJECT IDENTIFIER of a ContentInfo.
func readOID(data []byte) ([]byte, error) {
	ci, _, err := readElem(data, 0)
	if err != nil {
		return nil, err
	}
	f, _, err := readElem(ci.body, 1)
	if err != nil {
		return nil, err
	}
	return f.raw, nil
}

func keepCert(c elem, signers []*SignerInfo) bool {
	if !c.isUniversal(16) {
		return false // attribute and other certificate formats
	}
	cert, err := x509.ParseCertificate(c.raw)
	if err != nil {
		return false
	}
	if cert.BasicConstraintsValid && cert.IsCA {
		return true
	}
	for _, si := range signers {
		if si.Matches(cert) {
			return true
		}
	}
	return false
}
