package directory

import (
	"errors"
	"math/big"
	"strings"
	"testing"
)

// TestAmbiguousIdentifiers: a planted certificate carrying another
// owner's SKI, or another owner's issuer and serial, makes the identifier
// ambiguous: the identifier lookups refuse it, lookups by address reject
// every claimant, and Ambiguities reports it. A renewal of the same owner
// that kept its key is not ambiguous.
func TestAmbiguousIdentifiers(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)

	bobT := leafTemplate("bob", "bob@example.test")
	bobT.SubjectKeyId = []byte{0xb0, 0xb0}
	bob := p.leaf(bobT)
	// Mallory's planted certificate claims Bob's SKI.
	malT := leafTemplate("mallory", "mallory@example.test")
	malT.SubjectKeyId = []byte{0xb0, 0xb0}
	mal := p.leaf(malT)

	// Carol's identifier by issuer and serial is claimed by Eve's.
	carol := p.leaf(leafTemplate("carol", "carol@example.test"))
	eveT := leafTemplate("eve", "eve@example.test")
	eveT.SerialNumber = new(big.Int).Set(carol.SerialNumber)
	eve := p.leaf(eveT)

	// Dave renewed with the same key and SKI: one owner, not ambiguous.
	daveT := leafTemplate("dave", "dave@example.test")
	daveT.SubjectKeyId = []byte{0xda, 0x7e}
	dave1 := p.leaf(daveT)
	daveT2 := leafTemplate("dave", "dave@example.test")
	daveT2.SubjectKeyId = []byte{0xda, 0x7e}
	dave2 := p.leaf(daveT2)

	f.add(t, "bob.pem", bob)
	f.add(t, "planted.pem", mal, eve)
	f.add(t, "carol.pem", carol)
	f.add(t, "dave.pem", dave1, dave2)
	d := f.open(t, t0)

	t.Run("fail ski owner", func(t *testing.T) {
		if a, err := d.OwnerBySKI([]byte{0xb0, 0xb0}); !errors.Is(err, ErrAmbiguousIdentifier) || a != "" {
			t.Fatalf("OwnerBySKI = %q, %v; want ErrAmbiguousIdentifier", a, err)
		}
	})
	t.Run("fail issuer serial owner", func(t *testing.T) {
		if a, err := d.OwnerByIssuerSerial(carol.RawIssuer, carol.SerialNumber); !errors.Is(err, ErrAmbiguousIdentifier) || a != "" {
			t.Fatalf("OwnerByIssuerSerial = %q, %v; want ErrAmbiguousIdentifier", a, err)
		}
	})
	t.Run("ok renewal with the same key", func(t *testing.T) {
		if a, err := d.OwnerBySKI([]byte{0xda, 0x7e}); err != nil || a != "dave@example.test" {
			t.Fatalf("OwnerBySKI = %q, %v", a, err)
		}
		if v, _ := d.Lookup("dave@example.test"); len(v) != 2 {
			t.Fatalf("dave has %d valid certificates, want 2", len(v))
		}
	})
	for _, addr := range []string{"bob@example.test", "mallory@example.test", "carol@example.test", "eve@example.test"} {
		t.Run("fail lookup "+addr, func(t *testing.T) {
			valid, rejected := d.Lookup(addr)
			if len(valid) != 0 {
				t.Fatalf("%s has %d valid certificates; an ambiguous identifier must not be encrypted to", addr, len(valid))
			}
			if len(rejected) != 1 || !errors.Is(rejected[0].Err, ErrAmbiguousIdentifier) {
				t.Fatalf("rejected = %+v", rejected)
			}
		})
	}
	t.Run("ok reported", func(t *testing.T) {
		amb := d.Ambiguities()
		if len(amb) != 2 {
			t.Fatalf("Ambiguities = %+v, want 2", amb)
		}
		var got []string
		for _, a := range amb {
			got = append(got, a.ID+" "+strings.Join(a.Owners, "|"))
		}
		all := strings.Join(got, "\n")
		for _, want := range []string{"ski=b0b0 bob@example.test|mallory@example.test", "carol@example.test|eve@example.test"} {
			if !strings.Contains(all, want) {
				t.Errorf("report lacks %q:\n%s", want, all)
			}
		}
	})
}
