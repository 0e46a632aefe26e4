package directory

import (
	"context"
	"crypto/x509"
	"errors"
	"testing"
)

// TestAmbiguousInLDAP: a certificate planted in LDAP claiming another owner's SKI, whether
// that owner's certificate is in LDAP or in the folder, makes the identifier ambiguous once
// both have been seen: identifier lookups refuse it and lookups by address reject both.
func TestAmbiguousInLDAP(t *testing.T) {
	p := testPKI(t)
	s := startSlapd(t)
	lf := &ldapFixture{slapd: s, f: newFixtureTB(t)}

	trentT := leafTemplate("trent", "trent@example.test")
	trentT.SubjectKeyId = []byte{0x7e, 0x01}
	eveT := leafTemplate("eve", "eve@example.test")
	eveT.SubjectKeyId = []byte{0x7e, 0x01}
	s.addPerson("trent", "trent@example.test", []*x509.Certificate{p.leaf(trentT)}, nil)
	s.addPerson("eve", "eve@example.test", []*x509.Certificate{p.leaf(eveT)}, nil)

	// Frank's certificate is in the folder; Ivan's planted one in LDAP claims its SKI.
	frankT := leafTemplate("frank", "frank@example.test")
	frankT.SubjectKeyId = []byte{0xf0, 0x01}
	lf.f.add(t, "frank.pem", p.leaf(frankT))
	ivanT := leafTemplate("ivan", "ivan@example.test")
	ivanT.SubjectKeyId = []byte{0xf0, 0x01}
	s.addPerson("ivan", "ivan@example.test", []*x509.Certificate{p.leaf(ivanT)}, nil)

	d := lf.open(t, func(o *Options) { o.Sources = []string{SourceFolder, SourceLDAP} })
	ctx := context.Background()
	for _, addr := range []string{"trent@example.test", "eve@example.test", "ivan@example.test"} {
		if _, _, err := d.LookupContext(ctx, addr); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		ski  []byte
	}{
		{"fail both in ldap", []byte{0x7e, 0x01}},
		{"fail folder and ldap", []byte{0xf0, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if a, err := d.OwnerBySKI(tc.ski); !errors.Is(err, ErrAmbiguousIdentifier) {
				t.Fatalf("OwnerBySKI = %q, %v; want ErrAmbiguousIdentifier", a, err)
			}
		})
	}
	for _, addr := range []string{"trent@example.test", "eve@example.test", "frank@example.test", "ivan@example.test"} {
		t.Run("fail lookup "+addr, func(t *testing.T) {
			valid, rejected, err := d.LookupContext(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			if len(valid) != 0 || len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrAmbiguousIdentifier) {
				t.Fatalf("valid %d, rejected %+v; want the certificate refused as ambiguous", len(valid), rejected)
			}
		})
	}
	if amb := d.Ambiguities(); len(amb) != 2 {
		t.Errorf("Ambiguities = %+v, want 2", amb)
	}
}
