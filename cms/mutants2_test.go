package cms

// Tests that kill mutants scripts/mutation.sh found living in cms's files from recipient.go on
// (the cms-rest target; docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"appliance/cms/oid"
	"appliance/internal/softhsmtest"
)

// TestKeyAgreementWrappedKeyBounds: a KeyAgree entry's wrapped key is an AES key of 16, 24 or
// 32 bytes plus 8, so 24 and 40 bytes are read and 16 and 48 refused, as is a length not a
// multiple of 8.
func TestKeyAgreementWrappedKeyBounds(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	ri, err := KeyAgreeRecipient(context.Background(), newSoftKey(t), frank, KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for n, ok := range map[int]bool{16: false, 24: true, 32: true, 36: false, 40: true, 48: false} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			r := *ri
			r.Keys = []KeyAgreeKey{ri.Keys[0]}
			r.Keys[0].EncryptedKey = bytes.Repeat([]byte{1}, n)
			ka, err := r.KeyAgreement(frank)
			if ok && (err != nil || len(ka.EncryptedKey) != n) {
				t.Fatalf("%d-byte wrapped key: %v", n, err)
			}
			if !ok && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%d-byte wrapped key: %v, want %v", n, err, ErrMalformed)
			}
		})
	}
}

// TestKeyAgreementFieldCount: a KeyAgreeRecipientInfo has 4 fields, or 5 with a ukm, which goes
// into the KDF's SharedInfo as entityUInfo; 3 or 6 fields are refused.
func TestKeyAgreementFieldCount(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	ri, err := KeyAgreeRecipient(context.Background(), newSoftKey(t), frank, KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := readElem(ri.Raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.children(1)
	if err != nil || len(cs) != 4 {
		t.Fatalf("%d fields, %v", len(cs), err)
	}
	ukm := []byte("user keying material")
	ukmField := append([]byte{0xa1, byte(2 + len(ukm)), 0x04, byte(len(ukm))}, ukm...)
	with := func(fields ...[]byte) *RecipientInfo {
		body := bytes.Join(fields, nil)
		r := *ri
		r.Raw = append(appendHeader(nil, 0xa1, len(body)), body...)
		return &r
	}
	ka, err := with(cs[0].raw, cs[1].raw, ukmField, cs[2].raw, cs[3].raw).KeyAgreement(frank)
	if err != nil {
		t.Fatalf("with a ukm: %v", err)
	}
	want, err := sharedInfo(AlgorithmIdentifier{Algorithm: oid.AES256Wrap}, ukm, 32)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ka.SharedInfo, want) || !bytes.Contains(ka.SharedInfo, ukm) {
		t.Errorf("with a ukm: SharedInfo %x, KEK %d bytes", ka.SharedInfo, ka.KEKSize)
	}
	if ka, err := with(cs[0].raw, cs[1].raw, cs[2].raw, cs[3].raw).KeyAgreement(frank); err != nil || bytes.Contains(ka.SharedInfo, ukm) {
		t.Errorf("without a ukm: %v", err)
	}
	for name, r := range map[string]*RecipientInfo{
		"3 fields": with(cs[0].raw, cs[1].raw, cs[3].raw),
		"6 fields": with(cs[0].raw, cs[1].raw, ukmField, cs[2].raw, cs[3].raw, []byte{0x05, 0x00}),
	} {
		if _, err := r.KeyAgreement(frank); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", name, err, ErrMalformed)
		}
	}
}

// TestAESUnwrapSizes: the smallest wrap, a 16-byte key in 24 bytes, unwraps; 16 bytes (one
// block after the check value) and a length not a multiple of 8 are refused as malformed.
func TestAESUnwrapSizes(t *testing.T) {
	kek := bytes.Repeat([]byte{7}, 16)
	key := []byte("0123456789abcdef")
	w, err := aesKeyWrap(kek, key)
	if err != nil || len(w) != 24 {
		t.Fatalf("wrap: %d bytes, %v", len(w), err)
	}
	if got, err := aesUnwrap(kek, w); err != nil || !bytes.Equal(got, key) {
		t.Errorf("24-byte wrap: %q, %v", got, err)
	}
	for _, n := range []int{16, 20, 0} {
		if _, err := aesUnwrap(kek, w[:n]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%d-byte wrap: %v, want %v", n, err, ErrMalformed)
		}
	}
}

// signedParts is a SignedData ContentInfo taken apart: its first three fields (version,
// digestAlgorithms, encapContentInfo), its certificates and its SignerInfos.
type signedParts struct {
	head    []byte
	certs   [][]byte
	signers [][]byte
}

func splitSigned(t testing.TB, der []byte) signedParts {
	t.Helper()
	_, body, err := contentInfo(der)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := body.children(2)
	if err != nil || len(fs) != 5 {
		t.Fatalf("%d fields, %v", len(fs), err)
	}
	var p signedParts
	p.head = bytes.Join([][]byte{fs[0].raw, fs[1].raw, fs[2].raw}, nil)
	cs, err := fs[3].children(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		p.certs = append(p.certs, c.raw)
	}
	sis, err := fs[4].children(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sis {
		p.signers = append(p.signers, s.raw)
	}
	return p
}

// der encodes p again as a SignedData ContentInfo (certificates left out when there are none).
func (p signedParts) der() []byte {
	inner := bytes.Clone(p.head)
	if p.certs != nil {
		c := bytes.Join(p.certs, nil)
		inner = append(appendHeader(inner, tagContext0, len(c)), c...)
	}
	s := bytes.Join(p.signers, nil)
	inner = append(appendHeader(inner, tagSet, len(s)), s...)
	sd := append(appendHeader(nil, tagSequence, len(inner)), inner...)
	explicit := append(appendHeader(nil, tagContext0, len(sd)), sd...)
	ct := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	body := append(ct, explicit...)
	return append(appendHeader(nil, tagSequence, len(body)), body...)
}

// TestParseSignedLimits: ParseSigned takes exactly maxCertificates certificates and maxSigners
// SignerInfos, and refuses one more of either.
func TestParseSignedLimits(t *testing.T) {
	env := softhsmtest.Setup(t)
	der, err := Sign(env.Key(t, "frank"), []*x509.Certificate{env.Cert(t, "frank")}, []byte("x"), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	if sd, err := ParseSigned(p.der()); err != nil || len(sd.Signers) != 1 || len(sd.Certificates) != 1 {
		t.Fatalf("taken apart and put together: %v", err)
	}
	for n, ok := range map[int]bool{maxCertificates: true, maxCertificates + 1: false} {
		q := p
		q.certs = slices.Repeat(p.certs, n)
		sd, err := ParseSigned(q.der())
		if ok && (err != nil || len(sd.Certificates) != n) {
			t.Errorf("%d certificates: %v", n, err)
		}
		if !ok && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%d certificates: %v, want %v", n, err, ErrUnsupported)
		}
	}
	for n, ok := range map[int]bool{maxSigners: true, maxSigners + 1: false} {
		q := p
		q.signers = slices.Repeat(p.signers, n)
		sd, err := ParseSigned(q.der())
		if ok && (err != nil || len(sd.Signers) != n) {
			t.Errorf("%d signers: %v", n, err)
		}
		if !ok && !errors.Is(err, ErrUnsupported) {
			t.Errorf("%d signers: %v, want %v", n, err, ErrUnsupported)
		}
	}
}

// TestSniffOIDLength: a content type of 126 octets is the longest Sniff reads; 127 is refused.
func TestSniffOIDLength(t *testing.T) {
	arc := []byte{0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07}
	for n, ok := range map[int]bool{126: true, 127: false} {
		o := append(bytes.Clone(arc), bytes.Repeat([]byte{0x01}, n-len(arc))...)
		in := append([]byte{0x30, 0x80, 0x06, byte(n)}, o...)
		if ct, got := Sniff(in); got != ok || ok && len(ct) != 6+n-len(arc) {
			t.Errorf("%d-octet content type: %v, %v; want %v", n, ct, got, ok)
		}
	}
}

// TestEmptySubjectKeyID: an identifier with an empty subject key identifier names no
// certificate, not even one without the extension: a KeyAgree key, a RecipientInfo and a
// SignerInfo alike.
func TestEmptySubjectKeyID(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "no ski"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil || cert.SubjectKeyId != nil {
		t.Fatalf("certificate: ski %x, %v", cert.SubjectKeyId, err)
	}
	empty := []byte{}
	if (KeyAgreeKey{SubjectKeyID: empty}).names(cert) {
		t.Error("KeyAgreeKey with an empty ski names the certificate")
	}
	for _, k := range []RecipientKind{KeyTrans, KeyAgree} {
		if (&RecipientInfo{Kind: k, SubjectKeyID: empty}).Matches(cert) {
			t.Errorf("%v RecipientInfo with an empty ski matches the certificate", k)
		}
	}
	if (&SignerInfo{SubjectKeyID: empty}).Matches(cert) {
		t.Error("SignerInfo with an empty ski matches the certificate")
	}
	// Nor does it in the key space of CertIDKeys, which gives such a certificate only its
	// issuer and serial.
	keys := CertIDKeys(cert)
	if len(keys) != 1 || slices.Contains(keys, (&RecipientInfo{Kind: KeyTrans, SubjectKeyID: empty}).IDKey()) {
		t.Errorf("CertIDKeys of a certificate without an ski: %q", keys)
	}
	// The same identifiers by issuer and serial do name it.
	if !(KeyAgreeKey{Issuer: cert.RawIssuer, Serial: cert.SerialNumber}).names(cert) ||
		!(&RecipientInfo{Kind: KeyAgree, Issuer: cert.RawIssuer, Serial: cert.SerialNumber}).Matches(cert) ||
		!(&SignerInfo{Issuer: cert.RawIssuer, Serial: cert.SerialNumber}).Matches(cert) {
		t.Error("issuer and serial do not name the certificate")
	}
}

// TestSignedWithoutCertificates: a SignedData of four fields, no certificates or CRLs, parses,
// and KeepSignerCertificates returns it as it is.
func TestSignedWithoutCertificates(t *testing.T) {
	env := softhsmtest.Setup(t)
	der, err := Sign(env.Key(t, "frank"), []*x509.Certificate{env.Cert(t, "frank")}, []byte("x"), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	p.certs = nil
	bare := p.der()
	if sd, err := ParseSigned(bare); err != nil || len(sd.Certificates) != 0 || len(sd.Signers) != 1 {
		t.Fatalf("ParseSigned: %v", err)
	}
	if out, n, err := KeepSignerCertificates(bare); err != nil || n != 0 || !bytes.Equal(out, bare) {
		t.Fatalf("KeepSignerCertificates: %d dropped, %v", n, err)
	}
}

// TestOriginatorKeyParameters: the originator's id-ecPublicKey may carry no parameters, NULL or
// the certificate's curve; another curve is refused.
func TestOriginatorKeyParameters(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	ri, err := KeyAgreeRecipient(context.Background(), newSoftKey(t), frank, KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _, err := readElem(ri.Raw, 0)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := e.children(1)
	if err != nil || len(cs) != 4 {
		t.Fatalf("%d fields, %v", len(cs), err)
	}
	with := func(params []byte) *RecipientInfo {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.Tag(1).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				addAlgorithm(b, AlgorithmIdentifier{Algorithm: oid.ECPublicKey, Parameters: params})
				b.AddASN1(cbasn1.BIT_STRING, func(b *cryptobyte.Builder) {
					b.AddUint8(0)
					b.AddBytes(ri.OriginatorKey)
				})
			})
		})
		orig, err := b.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		body := bytes.Join([][]byte{cs[0].raw, orig, cs[2].raw, cs[3].raw}, nil)
		r := *ri
		r.Raw = append(appendHeader(nil, 0xa1, len(body)), body...)
		return &r
	}
	p256, _ := asn1.Marshal(oid.P256)
	p384, _ := asn1.Marshal(oid.P384)
	for name, params := range map[string][]byte{"absent": nil, "null": nullParams, "p-256": p256} {
		if ka, err := with(params).KeyAgreement(frank); err != nil || !bytes.Equal(ka.OriginatorKey, ri.OriginatorKey) {
			t.Errorf("parameters %s: %v", name, err)
		}
	}
	if _, err := with(p384).KeyAgreement(frank); !errors.Is(err, ErrUnsupported) {
		t.Errorf("parameters p-384: %v, want %v", err, ErrUnsupported)
	}
}
