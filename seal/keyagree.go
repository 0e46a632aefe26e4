package seal

import (
	"context"
	"crypto/x509"

	"appliance/cms"
)

// recipientInfo wraps key for cert: a KeyTransRecipientInfo for an RSA certificate, a
// KeyAgreeRecipientInfo (ECDH with a fresh ephemeral key, the content key wrapped on the token
// under the derived key) for a P-256 or P-384 one, named as opts.ID says. OAEP applies to key
// transport only.
func recipientInfo(ctx context.Context, key cms.ContentKey, cert *x509.Certificate, opts cms.KeyTransOptions) (*cms.RecipientInfo, error) {
	if cms.IsKeyAgree(cert) {
		return cms.KeyAgreeRecipient(ctx, key, cert, cms.KeyAgreeOptions{ID: opts.ID})
	}
	return cms.KeyTransRecipient(ctx, key, cert, opts)
}
