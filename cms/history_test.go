package cms

import (
	"appliance/internal/softhsmtest"
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"testing"
	"time"
)

// testListCert is a throwaway self-signed list certificate for tests without the PKI.
func testListCert(tb testing.TB) (*x509.Certificate, *rsa.PrivateKey) {
	return softhsmtest.SelfSigned(tb, "list")
}

// signedAttrsWith returns the raw [0] signedAttrs of a SignerInfo carrying extra.
func signedAttrsWith(tb testing.TB, cert *x509.Certificate, key *rsa.PrivateKey, extra ...Attribute) []byte {
	tb.Helper()
	der, err := Sign(key, []*x509.Certificate{cert}, []byte("x"), SignOptions{Detached: true, Extra: extra})
	if err != nil {
		tb.Fatal(err)
	}
	sd, err := ParseSigned(der)
	if err != nil {
		tb.Fatal(err)
	}
	return sd.Signers[0].SignedAttrs
}

func TestExpansionHistory(t *testing.T) {
	cert, key := testListCert(t)
	other, otherKey := testListCert(t)
	now := time.Now()

	// A history of n expansions by o, then optionally by l.
	oa, err := ExtendExpansionHistory(nil, other, now)
	if err != nil {
		t.Fatal(err)
	}
	byO, _, err := ParseExpansionHistory(signedAttrsWith(t, other, otherKey, oa))
	if err != nil || len(byO) != 1 {
		t.Fatalf("history by the other list: %v", err)
	}
	history := func(n int, byL bool) []byte {
		var old []MLData
		for range n {
			old = append(old, byO[0])
		}
		if byL {
			a, err := ExtendExpansionHistory(old, cert, now)
			if err != nil {
				t.Fatal(err)
			}
			return signedAttrsWith(t, cert, key, a)
		}
		if len(old) == 0 {
			return signedAttrsWith(t, cert, key)
		}
		a := Attribute{Type: mlHistoryOID(), Value: encodeHistory(t, old)}
		return signedAttrsWith(t, cert, key, a)
	}
	for _, tc := range []struct {
		name    string
		attrs   []byte
		found   bool
		entries int
		extend  error
	}{
		{"ok no history", history(0, false), false, 0, nil},
		{"ok one other list", history(1, false), true, 1, nil},
		{"ok 63 entries", history(63, false), true, 63, nil},
		{"fail 64 entries", history(64, false), true, 64, ErrHistoryFull},
		{"fail loop", history(2, true), true, 3, ErrListLoop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, found, err := ParseExpansionHistory(tc.attrs)
			if err != nil || found != tc.found || len(h) != tc.entries {
				t.Fatalf("ParseExpansionHistory = %d entries, found %v, %v", len(h), found, err)
			}
			a, err := ExtendExpansionHistory(h, cert, now)
			if !errors.Is(err, tc.extend) {
				t.Fatalf("ExtendExpansionHistory = %v, want %v", err, tc.extend)
			}
			if err != nil {
				return
			}
			h2, _, err := ParseExpansionHistory(signedAttrsWith(t, cert, key, a))
			if err != nil || len(h2) != tc.entries+1 {
				t.Fatalf("extended history: %d entries, %v", len(h2), err)
			}
			last := h2[len(h2)-1]
			if last.Serial.Cmp(cert.SerialNumber) != 0 || !bytes.Equal(last.Issuer, cert.RawIssuer) {
				t.Fatal("the new entry does not name the list by issuer and serial")
			}
			for i := range h {
				if !bytes.Equal(h[i].Raw, h2[i].Raw) {
					t.Fatalf("entry %d was not carried forward byte for byte", i)
				}
			}
		})
	}
	t.Run("fail loop by subject key identifier", func(t *testing.T) {
		if _, err := ExtendExpansionHistory([]MLData{{SKI: cert.SubjectKeyId}}, cert, now); !errors.Is(err, ErrListLoop) {
			t.Fatalf("ExtendExpansionHistory = %v", err)
		}
	})
	t.Run("fail malformed", func(t *testing.T) {
		bad := Attribute{Type: mlHistoryOID(), Value: []byte{0x30, 0x03, 0x02, 0x01, 0x05}}
		if _, _, err := ParseExpansionHistory(signedAttrsWith(t, cert, key, bad)); !errors.Is(err, ErrBadHistory) {
			t.Fatalf("ParseExpansionHistory = %v", err)
		}
	})
}

func mlHistoryOID() []int { return []int{1, 2, 840, 113549, 1, 9, 16, 2, 3} }

func encodeHistory(tb testing.TB, h []MLData) []byte {
	tb.Helper()
	var body []byte
	for _, d := range h {
		body = append(body, d.Raw...)
	}
	out := []byte{0x30}
	switch n := len(body); {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	default:
		out = append(out, 0x82, byte(n>>8), byte(n))
	}
	return append(out, body...)
}

func FuzzParseHistory(f *testing.F) {
	cert, key := testListCert(f)
	a, err := ExtendExpansionHistory(nil, cert, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signedAttrsWith(f, cert, key, a))
	f.Add(signedAttrsWith(f, cert, key))
	f.Add([]byte{0xa0, 0x00})
	f.Fuzz(func(t *testing.T, attrs []byte) {
		h, found, err := ParseExpansionHistory(attrs)
		if err != nil {
			if !errors.Is(err, ErrBadHistory) && !errors.Is(err, ErrHistoryFull) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if !found && len(h) != 0 {
			t.Fatal("entries without the attribute")
		}
		if len(h) > MaxExpansionHistory+1 {
			t.Fatalf("%d entries parsed past the bound", len(h))
		}
		if _, err := ExtendExpansionHistory(h, cert, time.Now()); err != nil && !errors.Is(err, ErrHistoryFull) && !errors.Is(err, ErrListLoop) {
			t.Fatal(err)
		}
	})
}
