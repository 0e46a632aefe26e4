package audit

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
)

// ErrTampered is returned by Check when the trail has a problem; the report is printed already.
var ErrTampered = fmt.Errorf("audit trail does not verify")

// Check verifies paths and prints the report to w (readable, or as one JSON object), returning
// ErrTampered (wrapped with the problem) when Verify found one.
func Check(w io.Writer, paths []string, opts VerifyOptions, asJSON bool) error {
	rep, err := Verify(paths, opts)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "files: %d, records: %d (seq %d to %d), sealed: %d, signed: %d\n", rep.Files, rep.Records, rep.FirstSeq, rep.LastSeq, rep.Sealed, rep.Signed)
		for _, k := range rep.Keys {
			fmt.Fprintf(w, "signing key: sha256 %s\n", k)
		}
		if len(opts.Trusted) == 0 && rep.Signed > 0 {
			fmt.Fprintln(w, "note: no -key given: signatures were checked against the key each seal carries, not against a trusted one")
		}
		for _, n := range rep.Notes {
			fmt.Fprintf(w, "note: %s\n", n)
		}
		if rep.Problem != nil {
			fmt.Fprintf(w, "FAIL %s\n", rep.Problem.Error())
		} else {
			fmt.Fprintln(w, "ok")
		}
	}
	if rep.Problem != nil {
		return fmt.Errorf("%w: %s", ErrTampered, rep.Problem.Error())
	}
	return nil
}

// LoadKeys reads trusted keys from a PEM file: CERTIFICATE blocks (their public keys) and PUBLIC
// KEY blocks.
func LoadKeys(path string) ([]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []crypto.PublicKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("audit: %s: %w", path, err)
			}
			out = append(out, c.PublicKey)
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("audit: %s: %w", path, err)
			}
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("audit: no CERTIFICATE or PUBLIC KEY in %s", path)
	}
	return out, nil
}
