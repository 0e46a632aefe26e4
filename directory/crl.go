package directory

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Reasons tied to revocation.
var (
	ErrRevoked = errors.New("certificate is revoked")
	// ErrCRLIssuer is a CRL whose signer is not a known CA: it is ignored,
	// since anyone could have written it.
	ErrCRLIssuer = errors.New("CRL is not signed by a configured CA")
	// ErrCRLStale is a CRL past its nextUpdate. It is still applied: an old
	// list of revoked certificates is better than none, and refusing every
	// recipient of the CA over a late CRL would stop mail instead.
	ErrCRLStale = errors.New("CRL is past its nextUpdate")
)

func (s *snapshot) loadCRLs(dir string, now time.Time) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("failed to read CRL folder: %w", err)
	}
	if st, err := os.Stat(root); err != nil {
		return fmt.Errorf("failed to read CRL folder: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("failed to read CRL folder %q: not a directory", dir)
	}
	err = s.walk(root, func(path string) {
		if err := s.addCRLFile(path, now); err != nil {
			s.problems = append(s.problems, &FileError{Path: path, Err: err})
		}
	})
	if err != nil {
		return fmt.Errorf("failed to read CRL folder: %w", err)
	}
	return nil
}

// addCRLFile applies every CRL in the file it can authenticate; the error
// reports the first one it could not use, or staleness.
func (s *snapshot) addCRLFile(path string, now time.Time) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return err
	}
	if len(data) > maxFileSize {
		return fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	crls, err := ParseCRLs(data)
	if err != nil {
		return err
	}
	var problem error
	for _, crl := range crls {
		issuer := s.crlIssuer(crl)
		if issuer == nil {
			problem = firstErr(problem, fmt.Errorf("%w: issuer %q", ErrCRLIssuer, crl.Issuer.String()))
			continue
		}
		for _, e := range crl.RevokedCertificateEntries {
			s.revoked[issuerSerialKey(crl.RawIssuer, e.SerialNumber)] = e.RevocationTime
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			problem = firstErr(problem, fmt.Errorf("%w (issuer %q, next update %s)", ErrCRLStale,
				crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return problem
}

func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

func (s *snapshot) crlIssuer(crl *x509.RevocationList) *x509.Certificate {
	for _, c := range s.cas {
		if bytes.Equal(c.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// revokedIn returns the first certificate of chain (the root excepted,
// which no CRL can revoke) listed as revoked, or nil.
func (s *snapshot) revokedIn(chain []*x509.Certificate) *x509.Certificate {
	if len(s.revoked) == 0 {
		return nil
	}
	for _, c := range chain[:len(chain)-1] {
		if _, ok := s.revoked[issuerSerialKey(c.RawIssuer, c.SerialNumber)]; ok {
			return c
		}
	}
	return nil
}

// ParseCRLs reads every CRL in PEM ("X509 CRL" blocks) or DER data.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		crl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("not PEM, and not a DER CRL: %w", err)
		}
		return []*x509.RevocationList{crl}, nil
	}
	out, err := parsePEM(data, "X509 CRL", x509.ParseRevocationList)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no CRL found")
	}
	return out, nil
}
