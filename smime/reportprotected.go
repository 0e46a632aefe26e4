package smime

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strings"
)

// What `inspect -key` adds to a report: the header a package's recipients read inside it (RFC
// 9788 header protection), decrypted in software with a recipient's key file the operator
// gives. Without a key the report says what the outer header reveals and that the inside was
// not read.

// ParseRecipientKey reads a PEM RSA private key (PKCS #8 or PKCS #1) and the first certificate
// from b (cert is nil when b holds none).
func ParseRecipientKey(b []byte) (key *rsa.PrivateKey, cert *x509.Certificate, err error) {
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, nil, err
			}
			if key, _ = k.(*rsa.PrivateKey); key == nil {
				return nil, nil, errors.New("not an RSA key")
			}
		case "RSA PRIVATE KEY":
			if key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
				return nil, nil, err
			}
		case "CERTIFICATE":
			if cert == nil {
				cert, _ = x509.ParseCertificate(blk.Bytes)
			}
		}
	}
	if key == nil {
		return nil, nil, errors.New("no private key")
	}
	return key, cert, nil
}

// ProtectedReport is the header inside a package, as its recipients read it.
type ProtectedReport struct {
	Error  string        `json:"error,omitempty"`
	Mode   string        `json:"hp,omitempty"` // "cipher", "clear", or "" (no header protection)
	Header []ReportField `json:"header,omitempty"`
	Outer  []string      `json:"hp_outer,omitempty"`
	Legacy bool          `json:"legacy_display,omitempty"`
}

// InspectProtected decrypts data with the recipient's key and reads the protected header inside.
func InspectProtected(data []byte, cert *x509.Certificate, key *rsa.PrivateKey) *ProtectedReport {
	inner, err := OpenWithKey(data, cert, key)
	if err != nil {
		if errors.Is(err, ErrNotForKey) {
			return &ProtectedReport{Error: fmt.Sprintf("no RecipientInfo for %s", cert.Subject)}
		}
		return &ProtectedReport{Error: err.Error()}
	}
	p, err := ReadProtected(Canonicalize(inner))
	if err != nil {
		return &ProtectedReport{Error: err.Error()}
	}
	pr := &ProtectedReport{Mode: p.Mode, Outer: p.Outer, Legacy: p.Legacy}
	for f := p.Header.Fields(); f.Next(); {
		pr.Header = append(pr.Header, ReportField{Field: f.Key(), Value: f.Value()})
	}
	return pr
}

// WriteText prints pr (nil: no key was given) for a report of envelopes envelopes.
func (pr *ProtectedReport) WriteText(w io.Writer, envelopes int) {
	switch {
	case envelopes == 0:
	case pr == nil:
		fmt.Fprintf(w, "  inside: not read (give a recipient's key with -key to see the protected header)\n")
	case pr.Error != "":
		fmt.Fprintf(w, "  inside: cannot decrypt: %s\n", pr.Error)
	case pr.Mode == "":
		fmt.Fprintf(w, "  inside: no protected header (no hp parameter)\n")
	default:
		fmt.Fprintf(w, "  inside: protected header, hp=%s\n", pr.Mode)
		for _, f := range pr.Header {
			fmt.Fprintf(w, "    %-12s %s\n", f.Field+":", f.Value)
		}
		if len(pr.Outer) > 0 {
			fmt.Fprintf(w, "    outer header as sent (HP-Outer): %s\n", strings.Join(pr.Outer, "; "))
		}
		if pr.Legacy {
			fmt.Fprintf(w, "    legacy display element in the body\n")
		}
	}
}
