package compliance

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"testing"

	"appliance/cms"
	"appliance/queue"
	"appliance/smime"
)

// TestListPackageRecipientInfos: a list member's package (behind the pipeline's trace field)
// names the member's RecipientInfos by issuer and serial, or subject key identifier, as the
// list expansion recorded them; the journal report and the sealed records take them from here.
func TestListPackageRecipientInfos(t *testing.T) {
	issuer, err := asn1.Marshal(pkix.Name{CommonName: "Test CA", Organization: []string{"Example"}}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	ris := []*cms.RecipientInfo{
		{Kind: cms.KeyTrans, Issuer: issuer, Serial: big.NewInt(0x1234), EncryptedKey: []byte("secret"), Raw: []byte{0x30, 0}},
		{Kind: cms.KeyTrans, SubjectKeyID: []byte{0xab, 0xcd}},
	}
	parts := smime.NewListParts([]byte("From: list@example.test\r\n"), "enveloped-data", nil)
	lp := parts.Package("bob@example.test", []byte{0x30}, []byte("signature"))
	lp.SetRecipientInfos(ris)
	if kept := lp.RecipientInfos(); len(kept) != 2 || kept[0].EncryptedKey != nil || kept[0].Raw != nil {
		t.Errorf("the package keeps %+v, want identifiers only", kept)
	}
	got, err := PackageRecipientInfos(queue.NewPrefixed("Received: by test\r\n", lp, nil))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"issuer-serial:CN=Test CA,O=Example/0x1234", "ski:abcd"}
	if !slices.Equal(got, want) {
		t.Errorf("PackageRecipientInfos = %q, want %q", got, want)
	}
	// Without recorded identifiers (as before) the package names none.
	if got, err := PackageRecipientInfos(parts.Package("carol@example.test", []byte{0x30}, nil)); err != nil || got != nil {
		t.Errorf("no identifiers recorded: %q %v", got, err)
	}
}
