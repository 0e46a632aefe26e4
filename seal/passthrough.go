package seal

import (
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
// without decrypting (DESIGN section 6): der is the client's CMS re-encoded with only the
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
	p := &Package{Package: pk, header: outer.Copy(), smimeType: smimeType, der: der}
	pk.Edits.Apply(&p.header)
	return p, nil
}
