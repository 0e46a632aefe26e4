package seal

import (
	"fmt"

	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// Header protection (RFC 9788): when the plan has it, the entity every encrypted package signs
// and encrypts is the Cryptographic Payload with the protected header (hp="cipher"), and each
// encrypted package's outer header is obscured; a signed-only package signs a payload of its
// own (hp="clear"), whose outer header stays as it is. The protected header is the plan's, the
// same for every package (split, protect.go), so the message is still signed once for all its
// encrypted packages and encrypted once per profile.

// payloads returns the entities that encrypted and signed-only packages sign: entity itself
// when the plan has no header protection.
func payloads(outer textproto.Header, entity []byte, plan *split.Plan) (cipher, clear []byte, err error) {
	if plan.Protection == nil {
		return entity, entity, nil
	}
	prot := outer.Copy()
	plan.Protection.Header.Apply(&prot)
	obscured := prot.Copy()
	smime.ObscureOuter(&obscured)
	if cipher, err = smime.Protect(entity, prot, smime.HPCipher, obscured, true); err != nil {
		return nil, nil, fmt.Errorf("failed to protect header: %w", err)
	}
	if clear, err = smime.Protect(entity, prot, smime.HPClear, textproto.Header{}, false); err != nil {
		return nil, nil, fmt.Errorf("failed to protect header: %w", err)
	}
	return cipher, clear, nil
}

// signedOnly is the multipart/signed entity of the plan's signed-only packages: the one the
// encrypted packages carry, or, with header protection, one signed over the hp="clear" payload.
func (s *Sealer) signedOnly(plan *split.Plan, signed *signedEntity, clear []byte, sender Sender) ([]byte, error) {
	if plan.Protection == nil {
		return signed.bytes(), nil
	}
	own, err := s.sign(clear, sender)
	if err != nil {
		return nil, err
	}
	return own.bytes(), nil
}

// obscure applies the header confidentiality policy to an encrypted package's outer header.
func obscure(plan *split.Plan, pk split.Package, h *textproto.Header) {
	if plan.Protection != nil && pk.Profile != "" {
		smime.ObscureOuter(h)
	}
}
