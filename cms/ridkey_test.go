package cms

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"slices"
	"testing"
)

func TestIDKey(t *testing.T) {
	issuer, err := asn1.Marshal(pkix.Name{CommonName: "CA"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	c := &x509.Certificate{RawIssuer: issuer, SerialNumber: big.NewInt(0x1f), SubjectKeyId: []byte{1, 2}}
	other := &x509.Certificate{RawIssuer: issuer, SerialNumber: big.NewInt(0x20)}
	for _, tc := range []struct {
		name  string
		ri    *RecipientInfo
		match bool
		desc  string
	}{
		{"ok issuer and serial", &RecipientInfo{Kind: KeyTrans, Issuer: issuer, Serial: big.NewInt(0x1f)}, true, "issuer=CN=CA serial=1f"},
		{"ok subject key identifier", &RecipientInfo{Kind: KeyTrans, SubjectKeyID: []byte{1, 2}}, true, "ski=0102"},
		{"fail other serial", &RecipientInfo{Kind: KeyTrans, Issuer: issuer, Serial: big.NewInt(0x20)}, false, "issuer=CN=CA serial=20"},
		{"ok key agreement for one certificate", &RecipientInfo{Kind: KeyAgree, SubjectKeyID: []byte{1, 2}}, true, "ski=0102"},
		{"fail key agreement for several certificates", &RecipientInfo{Kind: KeyAgree, Keys: []KeyAgreeKey{{SubjectKeyID: []byte{1, 2}}, {SubjectKeyID: []byte{3}}}}, false, ""},
		{"fail other kind", &RecipientInfo{Kind: KEK, SubjectKeyID: []byte{1, 2}}, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.ri.IDKey()
			if got := key != "" && slices.Contains(CertIDKeys(c), key); got != tc.match {
				t.Fatalf("match = %v, want %v", got, tc.match)
			}
			if tc.match && slices.Contains(CertIDKeys(other), key) {
				t.Fatal("matches another certificate")
			}
			if d := tc.ri.DescribeID(); d != tc.desc {
				t.Fatalf("DescribeID = %q, want %q", d, tc.desc)
			}
		})
	}
}
