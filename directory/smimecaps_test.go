package directory

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"reflect"
	"testing"
)

func TestSMIMECapabilities(t *testing.T) {
	p := testPKI(t)
	gcm := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}
	cbc := asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	rc2 := asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}
	good, err := asn1.Marshal([]smimeCapability{{ID: gcm}, {ID: cbc}, {ID: rc2, Params: asn1.RawValue{FullBytes: []byte{0x02, 0x01, 0x28}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		ext  []byte
		want []asn1.ObjectIdentifier
	}{
		{"ok in order, with parameters", good, []asn1.ObjectIdentifier{gcm, cbc, rc2}},
		{"ok absent", nil, nil},
		{"fail malformed is ignored", []byte{0x30, 0x05, 0x06}, nil},
		{"fail trailing data is ignored", append(append([]byte{}, good...), 0), nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tmpl := leafTemplate("caps", "caps@example.test")
			if tt.ext != nil {
				tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSMIMECapabilities, Value: tt.ext}}
			}
			c := p.leaf(tmpl)
			if got := SMIMECapabilities(c); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("= %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("ok entry carries them", func(t *testing.T) {
		f := newFixture(t)
		tmpl := leafTemplate("caps", "caps@example.test")
		tmpl.ExtraExtensions = []pkix.Extension{{Id: oidSMIMECapabilities, Value: good}}
		f.add(t, "caps.pem", p.leaf(tmpl))
		v, r := f.open(t, t0).Lookup("caps@example.test")
		if len(v) != 1 || len(v[0].SMIMECaps) != 3 || !v[0].SMIMECaps[0].Equal(gcm) {
			t.Fatalf("valid %v, rejected %v", v, r)
		}
	})
}
