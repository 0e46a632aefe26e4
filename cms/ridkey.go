package cms

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
)

// IDKey puts a key transport RecipientInfo's identifier, or that of a key agreement
// RecipientInfo whose keys all name one certificate, in the key space of CertIDKeys: a
// RecipientInfo and a certificate match when IDKey is one of the certificate's keys. Other
// kinds of RecipientInfo have "".
func (ri *RecipientInfo) IDKey() string {
	switch {
	case ri.Kind != KeyTrans && ri.Kind != KeyAgree:
		return ""
	case ri.SubjectKeyID != nil:
		return "ski:" + string(ri.SubjectKeyID)
	case ri.Serial != nil:
		return "is:" + string(ri.Issuer) + "\x00" + ri.Serial.Text(16)
	}
	return ""
}

// CertIDKeys are the identifiers a RecipientInfo may name c by (see IDKey).
func CertIDKeys(c *x509.Certificate) []string {
	keys := []string{"is:" + string(c.RawIssuer) + "\x00" + c.SerialNumber.Text(16)}
	if len(c.SubjectKeyId) > 0 {
		keys = append(keys, "ski:"+string(c.SubjectKeyId))
	}
	return keys
}

// DescribeID is a key transport (or single-certificate key agreement) RecipientInfo's
// identifier for a log line: the subject key identifier in hex, or the issuer's name and the
// serial number.
func (ri *RecipientInfo) DescribeID() string {
	switch {
	case ri.Kind != KeyTrans && ri.Kind != KeyAgree:
		return ""
	case ri.SubjectKeyID != nil:
		return "ski=" + hex.EncodeToString(ri.SubjectKeyID)
	case ri.Serial != nil:
		issuer := hex.EncodeToString(ri.Issuer)
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(ri.Issuer, &rdn); err == nil && len(rest) == 0 {
			var name pkix.Name
			name.FillFromRDNSequence(&rdn)
			issuer = name.String()
		}
		return "issuer=" + issuer + " serial=" + ri.Serial.Text(16)
	}
	return ""
}
