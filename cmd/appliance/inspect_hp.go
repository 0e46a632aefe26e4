package main

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"appliance/directory"
	"appliance/smime"
)

// What `inspect -key` adds: the header a package's recipients read inside it (RFC 9788 header
// protection), decrypted in software with a recipient's key file the operator gives. Without
// -key the report says what the outer header reveals and that the inside was not read.

// recipientKey is a recipient's private key and certificate, from -key (and -cert).
type recipientKey struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// loadRecipientKey reads a PEM private key (PKCS #8 or PKCS #1) from keyFile and the
// certificate from certFile, or from keyFile when certFile is "".
func loadRecipientKey(keyFile, certFile string) (*recipientKey, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	rk := &recipientKey{}
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", keyFile, err)
			}
			if rk.key, _ = k.(*rsa.PrivateKey); rk.key == nil {
				return nil, fmt.Errorf("%s: not an RSA key", keyFile)
			}
		case "RSA PRIVATE KEY":
			if rk.key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
				return nil, fmt.Errorf("%s: %w", keyFile, err)
			}
		case "CERTIFICATE":
			if rk.cert == nil {
				rk.cert, _ = x509.ParseCertificate(blk.Bytes)
			}
		}
	}
	if rk.key == nil {
		return nil, fmt.Errorf("%s: no private key", keyFile)
	}
	if certFile != "" {
		chain, err := directory.LoadCertificates(certFile)
		if err != nil || len(chain) == 0 {
			return nil, fmt.Errorf("%s: %v", certFile, err)
		}
		rk.cert = chain[0]
	}
	if rk.cert == nil {
		return nil, fmt.Errorf("%w: -key %s holds no certificate: give it with -cert", errUsage, keyFile)
	}
	return rk, nil
}

// protectedReport is the header inside a package, as its recipients read it.
type protectedReport struct {
	Error  string              `json:"error,omitempty"`
	Mode   string              `json:"hp,omitempty"` // "cipher", "clear", or "" (no header protection)
	Header []smime.ReportField `json:"header,omitempty"`
	Outer  []string            `json:"hp_outer,omitempty"`
	Legacy bool                `json:"legacy_display,omitempty"`
}

// readProtected decrypts data with rk and reads the protected header inside.
func readProtected(data []byte, rk *recipientKey) *protectedReport {
	inner, err := smime.OpenWithKey(data, rk.cert, rk.key)
	if err != nil {
		if errors.Is(err, smime.ErrNotForKey) {
			return &protectedReport{Error: fmt.Sprintf("no RecipientInfo for %s", rk.cert.Subject)}
		}
		return &protectedReport{Error: err.Error()}
	}
	p, err := smime.ReadProtected(smime.Canonicalize(inner))
	if err != nil {
		return &protectedReport{Error: err.Error()}
	}
	pr := &protectedReport{Mode: p.Mode, Outer: p.Outer, Legacy: p.Legacy}
	for f := p.Header.Fields(); f.Next(); {
		pr.Header = append(pr.Header, smime.ReportField{Field: f.Key(), Value: f.Value()})
	}
	return pr
}

func printProtected(w io.Writer, pr *protectedReport, envelopes int) {
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
