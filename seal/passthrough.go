package seal

import (
	"bytes"
	"errors"
	"fmt"

	"appliance/cms"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// ErrPassThrough reports arguments that cannot make a pass-through package.
var ErrPassThrough = errors.New("seal: invalid pass-through package")

// NewPassThrough makes the package of a client-encrypted message that the appliance split
// without decrypting (README, Client-encrypted mail): der is the client's CMS re-encoded with only the
// RecipientInfos pk may carry (cms.Enveloped.WithRecipients), outer the submitted header, of
// which a copy gets pk's edits (so Bcc goes as it does for plain mail). Nothing is signed: the
// appliance cannot read the content, so it vouches for nothing inside it, and a signature the
// client put inside the encryption stays as it was.
func NewPassThrough(pk split.Package, outer textproto.Header, smimeType string, der *cms.Encoded) (*Package, error) {
	if smimeType != smime.TypeEnvelopedData && smimeType != smime.TypeAuthEnvelopedData {
		return nil, fmt.Errorf("failed to make package: %w: smime-type %q", ErrPassThrough, smimeType)
	}
	if der == nil || der.Len() == 0 {
		return nil, fmt.Errorf("failed to make package: %w: no cms", ErrPassThrough)
	}
	if len(pk.Recipients) == 0 {
		return nil, fmt.Errorf("failed to make package: %w: no recipients", ErrPassThrough)
	}
	p := &Package{Package: pk, header: outer.Copy(), smimeType: smimeType, der: der, passThrough: smimeType}
	pk.Edits.Apply(&p.header)
	return p, nil
}

// ShareContent lets packages made by NewPassThrough from one client CMS encode the encrypted
// content they all carry in base64 once, as Seal's packages do, instead of once per package.
// Packages whose content is not the very same memory as the first one's are left alone.
func ShareContent(pkgs []*Package) {
	var first [][]byte
	var b64 *smime.SharedBase64
	for _, p := range pkgs {
		if p.der == nil || p.b64 != nil {
			continue
		}
		_, tail := p.der.Shared()
		if len(tail) == 0 || len(tail[0]) == 0 {
			continue
		}
		if b64 == nil {
			first, b64 = tail, smime.NewSharedBase64(tail)
		}
		if sameMemory(first, tail) {
			p.b64 = b64
		}
	}
}

func sameMemory(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) || (len(a[i]) > 0 && &a[i][0] != &b[i][0]) {
			return false
		}
	}
	return true
}

// NewResigned makes the package of a message its client signed over the encryption, split under
// policy signed_over_encrypted = "resign": der is the inner envelope re-encoded with only the
// RecipientInfos pk may carry, as for [NewPassThrough], and the package is that envelope as an
// application/pkcs7-mime entity signed again by sender on the HSM (multipart/signed). The
// client's signature covered every RecipientInfo, so it cannot survive the split; the new one
// covers only what this package carries.
func (s *Sealer) NewResigned(pk split.Package, outer textproto.Header, smimeType string, der *cms.Encoded, sender Sender) (*Package, error) {
	p, err := NewPassThrough(pk, outer, smimeType, der)
	if err != nil {
		return nil, err
	}
	var entity bytes.Buffer
	entity.WriteString("Content-Type: application/pkcs7-mime; smime-type=" + smimeType + "; name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=smime.p7m\r\n\r\n")
	enc := smime.NewBase64Writer(&entity)
	if _, err := der.WriteTo(enc); err != nil {
		return nil, fmt.Errorf("failed to make package: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("failed to make package: %w", err)
	}
	signed, err := s.sign(entity.Bytes(), sender)
	if err != nil {
		return nil, err
	}
	p.signed, p.der, p.smimeType = signed.bytes(), nil, ""
	return p, nil
}
