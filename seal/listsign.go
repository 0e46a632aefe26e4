package seal

import (
	"time"

	"appliance/cms"
)

// NewMemberSigner is SignMemberEnvelope made once for a whole expansion: its Sign gives, for
// each member's envelope digest, the signature SignMemberEnvelope gives, with the encoding they
// share made once rather than once per member.
func NewMemberSigner(list Sender, history cms.Attribute, now time.Time) (*cms.DigestSigner, error) {
	return cms.NewDigestSigner(list.Signer, list.Chain, cms.SignOptions{
		Detached:    true,
		SigningTime: now,
		Extra:       []cms.Attribute{history},
	})
}
