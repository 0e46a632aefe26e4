package seal

import (
	"strings"

	"appliance/smime"
	"appliance/split"
)

// The modes a package records (queue.Package.Mode), as metrics count them.
const (
	ModeEncrypted   = "encrypted"         // signed on the HSM and encrypted
	ModeSigned      = "signed"            // signed only (missing_cert = plaintext)
	ModePassThrough = "passthrough"       // client-encrypted, RecipientInfos subset, not re-encrypted
	ProfileCompat   = split.ProfileCompat // EnvelopedData, AES-CBC
	ProfileModern   = "modern"            // AuthEnvelopedData, AES-GCM
	ProfileNone     = "none"              // the profile of a package that is not encrypted
)

// Kind says what the package is: its mode and its content profile (ProfileCompat,
// ProfileModern or ProfileNone). A client's envelope signed again on the HSM is still
// pass-through: the appliance did not encrypt it.
func (p *Package) Kind() (mode, profile string) {
	switch {
	case p.passThrough != "":
		return ModePassThrough, ProfileOf(p.passThrough)
	case p.smimeType == "":
		return ModeSigned, ProfileNone
	}
	return ModeEncrypted, ProfileOf(p.smimeType)
}

// ProfileOf is the content profile of an envelope of smimeType: AuthEnvelopedData (AES-GCM) is
// modern, EnvelopedData compat.
func ProfileOf(smimeType string) string {
	if strings.EqualFold(smimeType, smime.TypeAuthEnvelopedData) {
		return ProfileModern
	}
	return ProfileCompat
}
