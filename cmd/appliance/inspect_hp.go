package main

import (
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"os"

	"appliance/directory"
	"appliance/smime"
)

// recipientKey is a recipient's private key and certificate, from -key (and -cert): `inspect`
// then reads the protected header inside each package (smime.InspectProtected).
type recipientKey struct {
	key  *rsa.PrivateKey
	cert *x509.Certificate
}

// loadRecipientKey reads the key (and the certificate, when certFile is "") from keyFile.
func loadRecipientKey(keyFile, certFile string) (*recipientKey, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	rk := &recipientKey{}
	if rk.key, rk.cert, err = smime.ParseRecipientKey(b); err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
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
