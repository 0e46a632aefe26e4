package smime

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"

	"appliance/cms"
)

// Inspection with a recipient's key. The appliance never decrypts mail it relays; `inspect
// -key` does, in software, for an operator who holds a recipient's private key file and wants
// to see what a package's recipients read: the protected header inside (RFC 9788). Only RSA
// key transport and AES content are read, which is what the appliance writes.

// ErrNotForKey reports a package with no RecipientInfo for the certificate given.
var ErrNotForKey = cms.ErrNotRecipient

// OpenWithKey decrypts an application/pkcs7-mime package (a whole message) for the holder of
// key, whose certificate is cert, and returns the decrypted entity (cms.DecryptWithKey).
func OpenWithKey(msg []byte, cert *x509.Certificate, key *rsa.PrivateKey) ([]byte, error) {
	p, err := Parse(bytes.NewReader(msg), int64(len(msg))+1)
	if err != nil {
		return nil, err
	}
	return cms.DecryptWithKey(p.DER, cert, key)
}
