package directory

import (
	"crypto/x509"
	"encoding/asn1"
)

var oidSMIMECapabilities = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}

// smimeCapability is RFC 8551 section 2.5.2's SMIMECapability.
type smimeCapability struct {
	ID     asn1.ObjectIdentifier
	Params asn1.RawValue `asn1:"optional"`
}

// SMIMECapabilities returns the algorithm identifiers of c's
// sMIMECapabilities extension (RFC 4262) in the certificate's order of
// preference, or nil when it has none. A malformed extension counts as
// none: capabilities are a hint for choosing a profile, never a reason to
// refuse a recipient.
func SMIMECapabilities(c *x509.Certificate) []asn1.ObjectIdentifier {
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidSMIMECapabilities) {
			continue
		}
		var caps []smimeCapability
		rest, err := asn1.Unmarshal(ext.Value, &caps)
		if err != nil || len(rest) != 0 {
			return nil
		}
		out := make([]asn1.ObjectIdentifier, 0, len(caps))
		for _, cp := range caps {
			out = append(out, cp.ID)
		}
		return out
	}
	return nil
}
