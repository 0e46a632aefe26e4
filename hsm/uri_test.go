package hsm_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"appliance/hsm"
)

func uintp(n uint) *uint { return &n }

func TestParseURI(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want *hsm.URI
	}{
		{"ok token object id", "pkcs11:token=appliance;object=alice;id=%01", &hsm.URI{Token: "appliance", Object: "alice", ID: []byte{1}}},
		{"ok empty path", "pkcs11:", &hsm.URI{}},
		{"ok percent-decoded label", "pkcs11:object=alice%20sign%3b2;type=private", &hsm.URI{Object: "alice sign;2", Type: "private"}},
		{"ok binary id", "pkcs11:id=%00%ff%10", &hsm.URI{ID: []byte{0, 0xff, 0x10}}},
		{"ok plus stays plus", "pkcs11:object=a+b", &hsm.URI{Object: "a+b"}},
		{"ok token attributes", "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2;serial=abc123;token=t",
			&hsm.URI{Manufacturer: "SoftHSM project", Model: "SoftHSM v2", Serial: "abc123", Token: "t"}},
		{"ok slot and library", "pkcs11:slot-id=7;slot-description=d;slot-manufacturer=m;library-manufacturer=lm;library-description=ld;library-version=2.6",
			&hsm.URI{SlotID: uintp(7), SlotDescription: "d", SlotManufacturer: "m", LibraryManufacturer: "lm", LibraryDescription: "ld", LibraryVersion: "2.6"}},
		{"ok cert type", "pkcs11:object=alice;type=cert", &hsm.URI{Object: "alice", Type: "cert"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := hsm.ParseURI(tc.in)
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseURI = %+v, want %+v", got, tc.want)
			}
			again, err := hsm.ParseURI(got.String())
			if err != nil || !reflect.DeepEqual(again, got) {
				t.Fatalf("String %q does not parse back: %+v, %v", got.String(), again, err)
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"fail no scheme", "token=appliance;object=alice"},
		{"fail other scheme", "file:object=alice"},
		{"fail bad escape", "pkcs11:object=%zz"},
		{"fail truncated escape", "pkcs11:id=%0"},
		{"fail no value", "pkcs11:object"},
		{"fail empty name", "pkcs11:=x"},
		{"fail duplicate", "pkcs11:object=a;object=b"},
		{"fail unknown attribute", "pkcs11:colour=red"},
		{"fail vendor attribute", "pkcs11:x-vendor=1"},
		{"fail bad type", "pkcs11:type=secret"},
		{"fail bad slot id", "pkcs11:slot-id=-1"},
		{"fail bad library version", "pkcs11:library-version=two"},
		{"fail pin-value", "pkcs11:object=alice?pin-value=1234"},
		{"fail pin-source", "pkcs11:object=alice?pin-source=file:/etc/pin"},
		{"fail module-path", "pkcs11:object=alice?module-path=/tmp/evil.so"},
		{"fail unknown query", "pkcs11:object=alice?foo=bar"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hsm.ParseURI(tc.in)
			if !errors.Is(err, hsm.ErrBadURI) {
				t.Fatalf("ParseURI(%q) error %v, want ErrBadURI", tc.in, err)
			}
			var he *hsm.Error
			if !errors.As(err, &he) || !bytes.Contains([]byte(he.Op), []byte(tc.in)) {
				t.Errorf("error %q does not name the URI", err)
			}
		})
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"pkcs11:token=appliance;object=alice;id=%01",
		"pkcs11:object=alice%20sign;type=private",
		"pkcs11:slot-id=7;library-version=2.6",
		"pkcs11:object=alice?pin-value=1234",
		"pkcs11:id=%00%ff",
		"pkcs11:",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := hsm.ParseURI(s)
		if err != nil {
			return
		}
		again, err := hsm.ParseURI(u.String())
		if err != nil {
			t.Fatalf("String %q of %q does not parse: %v", u.String(), s, err)
		}
		if !reflect.DeepEqual(normal(again), normal(u)) {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, u)
		}
	})
}

// normal treats an empty id like a missing one; String omits both.
func normal(u *hsm.URI) *hsm.URI {
	c := *u
	if len(c.ID) == 0 {
		c.ID = nil
	}
	return &c
}
