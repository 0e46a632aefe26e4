package seal

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"appliance/cms"
	"appliance/smime"
)

// A list expansion (RFC 2634 section 4) seals one post for every member: the content is signed
// as the list and encrypted once, then each member gets the content key wrapped for their own
// certificates and an outer signature by the list over their envelope. The pipeline decides
// who the members are; these are its signatures, encryptions and wraps.

// ListContent is a post encrypted once for every member of a list.
type ListContent struct {
	Key       cms.ContentKey        // the content key, for the members' wraps; the caller destroys it
	Content   *cms.EncryptedContent // the encrypted post
	SMIMEType string                // the members' envelopes' smime-type
	OAEP      crypto.Hash           // key transport for members: 0 is RSAES-PKCS1-v1_5
}

// ListContent signs a plain post (entity) as the list at now and encrypts the signed entity
// with a fresh content key under the named content profile.
func (s *Sealer) ListContent(ctx context.Context, entity []byte, profile string, list Sender, now time.Time) (*ListContent, error) {
	prof, ok := s.profile(profile)
	if !ok {
		return nil, fmt.Errorf("failed to expand: %w: %q", ErrUnknownProfile, profile)
	}
	if list.Signer == nil || len(list.Chain) == 0 {
		return nil, errors.New("failed to sign as list: no key or certificate")
	}
	sig, err := cms.Sign(list.Signer, list.Chain, entity, cms.SignOptions{
		Detached: true, SigningTime: now, EncryptionCert: list.Chain[0],
	})
	if err != nil {
		return nil, fmt.Errorf("failed to sign as list: %w", err)
	}
	micalg, err := smime.MicAlg(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	signed := smime.SignedEntity(entity, sig, micalg)
	key, err := s.NewKey(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to make content key: %w", err)
	}
	lc := &ListContent{Key: key, SMIMEType: smime.TypeEnvelopedData}
	if lc.Content, err = cms.Encrypt(ctx, key, prof.Content, bytes.NewReader(signed)); err != nil {
		return lc, fmt.Errorf("failed to encrypt content: %w", err)
	}
	if prof.Content == cms.AES256GCM {
		lc.SMIMEType = smime.TypeAuthEnvelopedData
	}
	if prof.OAEP {
		lc.OAEP = s.OAEPHash()
	}
	return lc, nil
}

// WrapMember wraps key for each of a list member's certificates (owner names the member, for
// the SKI choice), with RSAES-OAEP when oaep is not 0: the member's RecipientInfos.
func (s *Sealer) WrapMember(ctx context.Context, key cms.ContentKey, owner string, certs []*x509.Certificate, oaep crypto.Hash) ([]*cms.RecipientInfo, error) {
	ris := make([]*cms.RecipientInfo, 0, len(certs))
	for _, c := range certs {
		opts := cms.KeyTransOptions{ID: cms.IssuerAndSerial, OAEPHash: oaep}
		if s.SKI != nil && s.SKI(owner) {
			opts.ID = cms.SubjectKeyID
		}
		ri, err := recipientInfo(ctx, key, c, opts)
		if err != nil {
			return nil, err
		}
		ris = append(ris, ri)
	}
	return ris, nil
}

// NewMemberSigner makes the list's detached signatures over its members' envelope entities, each
// given by its SHA-256 digest and carrying the expansion history (cms.ExtendExpansionHistory).
// What the signatures share is encoded once for the whole expansion, not once per member.
func NewMemberSigner(list Sender, history cms.Attribute, now time.Time) (*cms.DigestSigner, error) {
	return cms.NewDigestSigner(list.Signer, list.Chain, cms.SignOptions{
		Detached:    true,
		SigningTime: now,
		Extra:       []cms.Attribute{history},
	})
}
