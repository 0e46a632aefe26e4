package cms

import (
	"encoding/asn1"
	"fmt"

	"appliance/cms/oid"
)

// CompressedData is id-ct-compressedData (RFC 3274).
var CompressedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9}

// pkcs7Arc and idCTArc hold every CMS content type: 1.2.840.113549.1.7.x (RFC 5652's data,
// signed-data, enveloped-data, digested-data, encrypted-data and PKCS #7's
// signedAndEnveloped-data) and id-ct, 1.2.840.113549.1.9.16.1.x (authEnveloped-data,
// compressed-data, receipts and the rest).
var (
	pkcs7Arc = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7}
	idCTArc  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1}
)

// Sniff reports whether data starts as a CMS ContentInfo: a SEQUENCE (definite or indefinite
// length, BER or DER) whose first element is an OBJECT IDENTIFIER in the PKCS #7 or id-ct arc.
// It returns that content type. It looks no further on purpose: a truncated or otherwise
// broken ContentInfo is still CMS to whoever tries to read it, so a caller that must account
// for every CMS structure treats it as one.
func Sniff(data []byte) (asn1.ObjectIdentifier, bool) {
	if len(data) < 2 || data[0] != 0x30 {
		return nil, false
	}
	off, _, ok := lengthOctets(data[1:])
	if !ok {
		return nil, false
	}
	rest := data[1+off:]
	if len(rest) < 2 || rest[0] != 0x06 {
		return nil, false
	}
	// Any length form BER allows, not only DER's shortest: decoders accept them.
	n, length, ok := lengthOctets(rest[1:])
	if !ok || length < 0 || length > 126 || 1+n+length > len(rest) {
		return nil, false
	}
	tlv := append([]byte{0x06, byte(length)}, rest[1+n:1+n+length]...)
	var ct asn1.ObjectIdentifier
	if r, err := asn1.Unmarshal(tlv, &ct); err != nil || len(r) != 0 {
		return nil, false
	}
	if !under(ct, pkcs7Arc) && !under(ct, idCTArc) {
		return nil, false
	}
	return ct, true
}

// lengthOctets reads BER length octets: how many there are and the length (-1 for the
// indefinite form). The length is not checked against the data, so truncated input reads.
func lengthOctets(b []byte) (n, length int, ok bool) {
	switch l := b[0]; {
	case l < 0x80:
		return 1, int(l), true
	case l == 0x80:
		return 1, -1, true
	case l == 0xff || l&0x7f > 4 || len(b) < 1+int(l&0x7f):
		return 0, 0, false
	default:
		k := int(l & 0x7f)
		for _, c := range b[1 : 1+k] {
			length = length<<8 | int(c)
		}
		return 1 + k, length, true
	}
}

func under(o, arc asn1.ObjectIdentifier) bool {
	return len(o) > len(arc) && o[:len(arc)].Equal(arc)
}

// SignedContent reads the encapsulated content of a SignedData ContentInfo, DER or BER, without
// parsing certificates or signers: its eContentType and eContent, nil when detached. It is what
// a classifier needs to look inside a signature layer.
func SignedContent(data []byte) (contentType asn1.ObjectIdentifier, content []byte, err error) {
	ct, body, err := contentInfo(data)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if !ct.Equal(oid.SignedData) {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w: content type %v", ErrUnsupported, ct)
	}
	rest := body.body
	var fs [3]elem
	for i := range fs {
		if len(rest) == 0 {
			return nil, nil, fmt.Errorf("failed to parse signed data: %w: %d fields", ErrMalformed, i)
		}
		if fs[i], rest, err = readElem(rest, 2); err != nil {
			return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
		}
	}
	if _, err := fs[0].smallInt(); err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: version: %w", err)
	}
	if !fs[1].isUniversal(17) || !fs[2].isUniversal(16) {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w: digestAlgorithms or encapContentInfo", ErrMalformed)
	}
	ecf, err := fs[2].children(3)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if len(ecf) < 1 || len(ecf) > 2 {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w: encapContentInfo with %d fields", ErrMalformed, len(ecf))
	}
	if contentType, err = ecf[0].oid(); err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if len(ecf) == 1 {
		return contentType, nil, nil
	}
	if !ecf[1].is(classContext, 0) || !ecf[1].constructed {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w: eContent", ErrMalformed)
	}
	inner, err := ecf[1].children(4)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	if len(inner) != 1 || !inner[0].isUniversal(4) {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w: eContent", ErrMalformed)
	}
	if content, err = inner[0].octets(5); err != nil {
		return nil, nil, fmt.Errorf("failed to parse signed data: %w", err)
	}
	return contentType, content, nil
}
