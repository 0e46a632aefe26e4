package pipeline

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"appliance/cms"
)

// testListCert is a throwaway self-signed list certificate for tests without the PKI.
func testListCert(tb testing.TB) (*x509.Certificate, *rsa.PrivateKey) {
	tb.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "list"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		SubjectKeyId: []byte{1, 2, 3, 4},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return c, key
}

// signedAttrsWith returns the raw [0] signedAttrs of a SignerInfo carrying extra.
func signedAttrsWith(tb testing.TB, cert *x509.Certificate, key *rsa.PrivateKey, extra ...cms.Attribute) []byte {
	tb.Helper()
	der, err := cms.Sign(key, []*x509.Certificate{cert}, []byte("x"), cms.SignOptions{Detached: true, Extra: extra})
	if err != nil {
		tb.Fatal(err)
	}
	sd, err := cms.ParseSigned(der)
	if err != nil {
		tb.Fatal(err)
	}
	return sd.Signers[0].SignedAttrs
}

func TestExpansionHistory(t *testing.T) {
	cert, key := testListCert(t)
	other, otherKey := testListCert(t)
	l := &mailList{List: List{Address: "list@example.test", Chain: []*x509.Certificate{cert}}}
	o := &mailList{List: List{Address: "other@example.test", Chain: []*x509.Certificate{other}}}
	now := time.Now()

	// A history of n expansions by o, then optionally by l.
	oa, err := o.extendHistory(nil, now)
	if err != nil {
		t.Fatal(err)
	}
	byO, _, err := parseHistory(signedAttrsWith(t, other, otherKey, oa))
	if err != nil || len(byO) != 1 {
		t.Fatalf("history by the other list: %v", err)
	}
	history := func(n int, byL bool) []byte {
		var old []mlData
		for range n {
			old = append(old, byO[0])
		}
		if byL {
			a, err := l.extendHistory(old, now)
			if err != nil {
				t.Fatal(err)
			}
			return signedAttrsWith(t, cert, key, a)
		}
		if len(old) == 0 {
			return signedAttrsWith(t, cert, key)
		}
		a := cms.Attribute{Type: mlHistoryOID(), Value: encodeHistory(t, old)}
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
			h, found, err := parseHistory(tc.attrs)
			if err != nil || found != tc.found || len(h) != tc.entries {
				t.Fatalf("parseHistory = %d entries, found %v, %v", len(h), found, err)
			}
			a, err := l.extendHistory(h, now)
			if !errors.Is(err, tc.extend) {
				t.Fatalf("extendHistory = %v, want %v", err, tc.extend)
			}
			if err != nil {
				return
			}
			h2, _, err := parseHistory(signedAttrsWith(t, cert, key, a))
			if err != nil || len(h2) != tc.entries+1 {
				t.Fatalf("extended history: %d entries, %v", len(h2), err)
			}
			last := h2[len(h2)-1]
			if last.serial.Cmp(cert.SerialNumber) != 0 || !bytes.Equal(last.issuer, cert.RawIssuer) {
				t.Fatal("the new entry does not name the list by issuer and serial")
			}
			for i := range h {
				if !bytes.Equal(h[i].raw, h2[i].raw) {
					t.Fatalf("entry %d was not carried forward byte for byte", i)
				}
			}
		})
	}
	t.Run("fail loop by subject key identifier", func(t *testing.T) {
		if _, err := l.extendHistory([]mlData{{ski: cert.SubjectKeyId}}, now); !errors.Is(err, ErrListLoop) {
			t.Fatalf("extendHistory = %v", err)
		}
	})
	t.Run("fail malformed", func(t *testing.T) {
		bad := cms.Attribute{Type: mlHistoryOID(), Value: []byte{0x30, 0x03, 0x02, 0x01, 0x05}}
		if _, _, err := parseHistory(signedAttrsWith(t, cert, key, bad)); !errors.Is(err, ErrBadHistory) {
			t.Fatalf("parseHistory = %v", err)
		}
	})
}

func mlHistoryOID() []int { return []int{1, 2, 840, 113549, 1, 9, 16, 2, 3} }

func encodeHistory(tb testing.TB, h []mlData) []byte {
	tb.Helper()
	var body []byte
	for _, d := range h {
		body = append(body, d.raw...)
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

func TestShareSignature(t *testing.T) {
	cert, key := testListCert(t)
	sp := &sharedParts{chain: []*x509.Certificate{cert}}
	var certs []byte
	for i := range 3 {
		sig, err := cms.Sign(key, sp.chain, []byte{byte(i)}, cms.SignOptions{Detached: true})
		if err != nil {
			t.Fatal(err)
		}
		parts := sp.share(sig)
		if len(parts) != 3 {
			t.Fatalf("signature %d not split around the certificates", i)
		}
		if certs == nil {
			certs = parts[1]
		} else if &parts[1][0] != &certs[0] {
			t.Fatal("certificates are not shared between signatures")
		}
		if !bytes.Equal(bytes.Join(parts, nil), sig) {
			t.Fatal("pieces do not make the signature")
		}
	}
	if parts := sp.share([]byte("no certificates here")); len(parts) != 1 {
		t.Fatal("a signature without the certificates was split")
	}
}

func FuzzParseHistory(f *testing.F) {
	cert, key := testListCert(f)
	l := &mailList{List: List{Address: "list@example.test", Chain: []*x509.Certificate{cert}}}
	a, err := l.extendHistory(nil, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signedAttrsWith(f, cert, key, a))
	f.Add(signedAttrsWith(f, cert, key))
	f.Add([]byte{0xa0, 0x00})
	f.Fuzz(func(t *testing.T, attrs []byte) {
		h, found, err := parseHistory(attrs)
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
		if _, err := l.extendHistory(h, time.Now()); err != nil && !errors.Is(err, ErrHistoryFull) && !errors.Is(err, ErrListLoop) {
			t.Fatal(err)
		}
	})
}

func FuzzParseMembers(f *testing.F) {
	f.Add("# list\nbob@example.test\n\nCarol@Example.test\r\n")
	f.Add("bob\n")
	f.Add("\"a b\"@example.test\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseMembers(strings.NewReader(in), false)
		if err != nil {
			return
		}
		for i, a := range got {
			if i > 0 && got[i-1] >= a {
				t.Fatalf("members not sorted and unique: %q", got)
			}
			if strings.ContainsAny(a, "\r\n<>,") {
				t.Fatalf("member %q", a)
			}
		}
	})
}

func FuzzReadPost(f *testing.F) {
	f.Add([]byte("From: a@example.test\r\nTo: list@example.test\r\n\r\nhi\r\n"))
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	f.Add([]byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\nMAA=\r\n--b--\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		p, err := readPost(msg)
		if err != nil {
			return
		}
		if len(p.history) > MaxExpansionHistory+1 {
			t.Fatalf("%d history entries", len(p.history))
		}
	})
}
