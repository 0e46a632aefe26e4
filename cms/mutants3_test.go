package cms

// Tests that kill mutants scripts/mutation.sh found living in ridkey.go, sign.go,
// signedcerts.go, sniff.go and verify.go (the cms-sign target; docs/testing.md, "Mutation
// testing").

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/cms/oid"
	"appliance/internal/softhsmtest"
)

// signedWith encodes a SignedData ContentInfo of head (version, digestAlgorithms,
// encapContentInfo) and the fields after it as given, each a whole element.
func signedWith(head []byte, fields ...[]byte) []byte {
	inner := bytes.Join(append([][]byte{head}, fields...), nil)
	sd := append(appendHeader(nil, tagSequence, len(inner)), inner...)
	explicit := append(appendHeader(nil, tagContext0, len(sd)), sd...)
	ct := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	body := append(ct, explicit...)
	return append(appendHeader(nil, tagSequence, len(body)), body...)
}

// testCRL is a CRL signed by a CA made for the test: SignedData carries it in its crls [1].
func testCRL(t testing.TB) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "crl issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCRLSign | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
	}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

// TestSignedCRLs: a SignedData with CRLs, after its certificates or without any, parses;
// KeepSignerCertificates drops the CRLs, counts them as one, keeps the signer's certificate,
// and what it returns still verifies.
func TestSignedCRLs(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	content := []byte("x")
	der, err := Sign(env.Key(t, "frank"), []*x509.Certificate{frank}, content, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	crl := testCRL(t)
	crls := append(appendHeader(nil, 0xa1, len(crl)), crl...)
	certs := append(appendHeader(nil, tagContext0, len(p.certs[0])), p.certs[0]...)
	signers := append(appendHeader(nil, tagSet, len(p.signers[0])), p.signers[0]...)
	root, _ := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	_, inter := env.Roots(t)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	for name, fields := range map[string][][]byte{
		"certificates and crls": {certs, crls, signers},
		"crls only":             {crls, signers},
	} {
		in := signedWith(p.head, fields...)
		sd, err := ParseSigned(in)
		if err != nil || len(sd.Signers) != 1 || len(sd.Certificates) != len(fields)-2 {
			t.Fatalf("%s: ParseSigned: %v", name, err)
		}
		out, dropped, err := KeepSignerCertificates(in)
		if err != nil || dropped != 1 {
			t.Fatalf("%s: KeepSignerCertificates: %d dropped, %v", name, dropped, err)
		}
		if bytes.Contains(out, crl) {
			t.Errorf("%s: the CRL is still there", name)
		}
		want := signedWith(p.head, signers) // no CRLs, and no certificates when there were none
		if len(fields) == 3 {
			want = signedWith(p.head, certs, signers)
		}
		if !bytes.Equal(out, want) {
			t.Errorf("%s: KeepSignerCertificates gave %x, want %x", name, out, want)
		}
		if len(fields) == 3 {
			sd, err := ParseSigned(out)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sd.Verify(VerifyOptions{Roots: roots, Intermediates: inters}); err != nil {
				t.Errorf("%s: no longer verifies: %v", name, err)
			}
		}
	}
}

// TestSignedNoSignerInfos: a SignedData whose certificates or CRLs are its last field, with no
// SignerInfos after them, is refused as malformed by ParseSigned and KeepSignerCertificates.
func TestSignedNoSignerInfos(t *testing.T) {
	env := softhsmtest.Setup(t)
	der, err := Sign(env.Key(t, "frank"), []*x509.Certificate{env.Cert(t, "frank")}, []byte("x"), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	certs := append(appendHeader(nil, tagContext0, len(p.certs[0])), p.certs[0]...)
	crl := testCRL(t)
	crls := append(appendHeader(nil, 0xa1, len(crl)), crl...)
	for name, in := range map[string][]byte{
		"certificates last": signedWith(p.head, certs),
		"crls last":         signedWith(p.head, certs, crls),
	} {
		if _, err := ParseSigned(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseSigned: %v, want %v", name, err, ErrMalformed)
		}
		if _, _, err := KeepSignerCertificates(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: KeepSignerCertificates: %v, want %v", name, err, ErrMalformed)
		}
	}
}

// TestSignDigestRefusalSays: a digest refused names what was wrong with it: its size, whether
// content came with it, whether the signature was to be detached.
func TestSignDigestRefusalSays(t *testing.T) {
	env := softhsmtest.Setup(t)
	alice := env.Cert(t, "alice")
	key := env.Key(t, "alice")
	content := []byte("content")
	sum := sha256.Sum256(content)
	for _, tt := range []struct {
		content []byte
		opts    SignOptions
		want    string
	}{
		{content, SignOptions{Detached: true, Digest: sum[:]}, "a 32-byte digest for SHA-256, with content true and detached true"},
		{nil, SignOptions{Digest: sum[:]}, "a 32-byte digest for SHA-256, with content false and detached false"},
		{nil, SignOptions{Detached: true, Digest: sum[:20]}, "a 20-byte digest for SHA-256, with content false and detached true"},
	} {
		_, err := Sign(key, []*x509.Certificate{alice}, tt.content, tt.opts)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Sign: %v, want %q", err, tt.want)
		}
	}
}

// TestSignedContent: SignedContent reads the encapsulated content of DER and BER SignedData
// (nil when detached) and refuses every malformed shape of the fields before the certificates.
func TestSignedContent(t *testing.T) {
	env := softhsmtest.Setup(t)
	tlv := func(tag byte, parts ...[]byte) []byte {
		c := bytes.Join(parts, nil)
		return append(appendHeader(nil, tag, len(c)), c...)
	}
	ver := []byte{0x02, 0x01, 0x01}
	data := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	sha := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01}
	algs := tlv(tagSet, tlv(tagSequence, sha))
	content := []byte("encapsulated")
	eci := tlv(tagSequence, data, tlv(tagContext0, tlv(0x04, content)))

	signed, err := Sign(env.Key(t, "frank"), []*x509.Certificate{env.Cert(t, "frank")}, content, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stream := seed(t, "signed-openssl-stream.der")
	sd, err := ParseSigned(stream)
	if err != nil || len(sd.Content) == 0 {
		t.Fatalf("stream: %v", err)
	}
	for name, tt := range map[string]struct {
		in   []byte
		want []byte
	}{
		"signed":      {signed, content},
		"by hand":     {signedWith(bytes.Join([][]byte{ver, algs, eci}, nil)), content},
		"detached":    {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data)}, nil)), nil},
		"openssl ber": {stream, sd.Content},
	} {
		ct, got, err := SignedContent(tt.in)
		if err != nil || !bytes.Equal(got, tt.want) || (got == nil) != (tt.want == nil) {
			t.Errorf("%s: %v %q, %v; want %q", name, ct, got, err, tt.want)
		}
		if err == nil && ct.String() != "1.2.840.113549.1.7.1" {
			t.Errorf("%s: content type %v", name, ct)
		}
	}
	for name, tt := range map[string]struct {
		in   []byte
		want error
	}{
		"enveloped data":        {seed(t, "enveloped-ours-gcm-keyagree.der"), ErrUnsupported},
		"two fields":            {signedWith(bytes.Join([][]byte{ver, algs}, nil)), ErrMalformed},
		"algorithms a sequence": {signedWith(bytes.Join([][]byte{ver, tlv(tagSequence, tlv(tagSequence, sha)), eci}, nil)), ErrMalformed},
		"content info a set":    {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSet, data)}, nil)), ErrMalformed},
		"content info empty":    {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence)}, nil)), ErrMalformed},
		"content info of three": {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(tagContext0, tlv(0x04, content)), tlv(0x04))}, nil)), ErrMalformed},
		"content [1]":           {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(0xa1, tlv(0x04, content)))}, nil)), ErrMalformed},
		"content primitive":     {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(0x80, content))}, nil)), ErrMalformed},
		"two octet strings":     {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(tagContext0, tlv(0x04, content), tlv(0x04)))}, nil)), ErrMalformed},
		"content an integer":    {signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(tagContext0, ver))}, nil)), ErrMalformed},
	} {
		if ct, got, err := SignedContent(tt.in); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v %q, %v; want %v", name, ct, got, err, tt.want)
		}
	}
	for name, in := range map[string][]byte{
		"version an octet string": signedWith(bytes.Join([][]byte{{0x04, 0x01, 0x01}, algs, eci}, nil)),
		"type not an oid":         signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, ver)}, nil)),
		"broken octet string":     signedWith(bytes.Join([][]byte{ver, algs, tlv(tagSequence, data, tlv(tagContext0, tlv(0x24, ver)))}, nil)),
		"not der":                 []byte{0x30, 0x03, 0x02},
	} {
		if ct, got, err := SignedContent(in); err == nil {
			t.Errorf("%s: %v %q, no error", name, ct, got)
		}
	}
}

// TestSignerInfoFieldCount: a SignerInfo without signed attributes has five fields and its
// signature is over the content itself: it parses and verifies. With signed attributes five
// fields lack the signature, and four fields lack more: both are refused as malformed.
func TestSignerInfoFieldCount(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	key := env.Key(t, "frank")
	content := []byte("signed without attributes")
	der, err := Sign(key, []*x509.Certificate{frank}, content, SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	si, _, err := readElem(p.signers[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := si.children(1)
	if err != nil || len(fs) != 6 || !fs[3].is(classContext, 0) {
		t.Fatalf("%d fields, %v", len(fs), err)
	}
	sum := sha256.Sum256(content)
	sig, err := key.Sign(rand.Reader, sum[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sigDER := append(appendHeader(nil, 0x04, len(sig)), sig...)
	with := func(fields ...[]byte) []byte {
		q := p
		c := bytes.Join(fields, nil)
		q.signers = [][]byte{append(appendHeader(nil, tagSequence, len(c)), c...)}
		return q.der()
	}
	root, inter := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inters := x509.NewCertPool()
	inters.AddCert(inter)

	bare := with(fs[0].raw, fs[1].raw, fs[2].raw, fs[4].raw, sigDER)
	sd, err := ParseSigned(bare)
	if err != nil || len(sd.Signers) != 1 || sd.Signers[0].SignedAttrs != nil || !bytes.Equal(sd.Signers[0].Signature, sig) {
		t.Fatalf("five fields without signed attributes: %v", err)
	}
	if got, err := sd.Verify(VerifyOptions{Roots: roots, Intermediates: inters}); err != nil || len(got) != 1 || !got[0].Equal(frank) {
		t.Errorf("five fields without signed attributes: verify: %v", err)
	}
	for name, in := range map[string][]byte{
		"attributes, no signature":        with(fs[0].raw, fs[1].raw, fs[2].raw, fs[3].raw, fs[4].raw),
		"no attributes, no signature":     with(fs[0].raw, fs[1].raw, fs[2].raw, fs[4].raw),
		"attributes, signature algorithm": with(fs[0].raw, fs[1].raw, fs[2].raw, fs[3].raw),
	} {
		if _, err := ParseSigned(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %v", name, err, ErrMalformed)
		}
	}
}

// TestSignerInfoSubjectKeyID: a SignerInfo may name its certificate by subject key identifier
// ([0]): it parses, verifies against that certificate, and a broken [0] is refused.
func TestSignerInfoSubjectKeyID(t *testing.T) {
	env := softhsmtest.Setup(t)
	frank := env.Cert(t, "frank")
	der, err := Sign(env.Key(t, "frank"), []*x509.Certificate{frank}, []byte("x"), SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := splitSigned(t, der)
	si, _, err := readElem(p.signers[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := si.children(1)
	if err != nil || len(fs) != 6 || len(frank.SubjectKeyId) == 0 {
		t.Fatalf("%d fields, %v, ski %x", len(fs), err, frank.SubjectKeyId)
	}
	with := func(sid []byte) []byte {
		q := p
		c := bytes.Join([][]byte{fs[0].raw, sid, fs[2].raw, fs[3].raw, fs[4].raw, fs[5].raw}, nil)
		q.signers = [][]byte{append(appendHeader(nil, tagSequence, len(c)), c...)}
		return q.der()
	}
	root, inter := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	ski := append(appendHeader(nil, tagContext0Pri, len(frank.SubjectKeyId)), frank.SubjectKeyId...)
	sd, err := ParseSigned(with(ski))
	if err != nil || !bytes.Equal(sd.Signers[0].SubjectKeyID, frank.SubjectKeyId) || sd.Signers[0].Serial != nil {
		t.Fatalf("by ski: %v", err)
	}
	if got, err := sd.Verify(VerifyOptions{Roots: roots, Intermediates: inters}); err != nil || len(got) != 1 || !got[0].Equal(frank) {
		t.Errorf("by ski: verify: %v", err)
	}
	broken := []byte{0xa0, 0x03, 0x02, 0x01, 0x01} // a constructed [0] holding an INTEGER
	if _, err := ParseSigned(with(broken)); err == nil {
		t.Error("a [0] identifier holding an INTEGER parses")
	}
}

// TestVerifyPSSChecksSignature: an RSASSA-PSS signature is checked, not only its parameters: a
// changed signature fails to verify.
func TestVerifyPSSChecksSignature(t *testing.T) {
	env := softhsmtest.Setup(t)
	alice := env.Cert(t, "alice")
	root, inter := env.Roots(t)
	der, err := Sign(env.Key(t, "alice"), []*x509.Certificate{alice, inter}, []byte("pss"), SignOptions{PSS: true})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	sd, err := ParseSigned(der)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sd.Verify(VerifyOptions{Roots: roots}); err != nil {
		t.Fatalf("as signed: %v", err)
	}
	sig := sd.Signers[0].Signature
	sig[len(sig)/2] ^= 1
	if _, err := sd.Verify(VerifyOptions{Roots: roots}); !errors.Is(err, ErrVerify) {
		t.Errorf("a changed PSS signature: %v, want %v", err, ErrVerify)
	}
}

// TestSniffTruncatedByOne: a content type one octet short of its length is not read, past the
// end of the input or at all.
func TestSniffTruncatedByOne(t *testing.T) {
	oid := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	for _, prefix := range [][]byte{{0x30, 0x80}, {0x30, 0x0b}} {
		in := slices.Clip(append(bytes.Clone(prefix), oid[:len(oid)-1]...))
		if ct, ok := Sniff(in); ok {
			t.Errorf("% x: %v", in, ct)
		}
		in = slices.Clip(append(append(bytes.Clone(prefix), 0x06, 0x81), oid[1:len(oid)-1]...))
		if ct, ok := Sniff(in); ok {
			t.Errorf("% x: %v", in, ct)
		}
	}
}

// TestSignCapabilities: SignOptions.Capabilities replaces the default SMIMECapabilities list in
// the signed attributes, and the signature still verifies.
func TestSignCapabilities(t *testing.T) {
	env := softhsmtest.Setup(t)
	alice := env.Cert(t, "alice")
	root, inter := env.Roots(t)
	caps := []AlgorithmIdentifier{{Algorithm: oid.AES128CBC}}
	der, err := Sign(env.Key(t, "alice"), []*x509.Certificate{alice, inter}, []byte("caps"), SignOptions{Capabilities: caps})
	if err != nil {
		t.Fatal(err)
	}
	want, err := capabilitiesDER(caps)
	if err != nil {
		t.Fatal(err)
	}
	def, err := defaultCapsDER()
	if err != nil {
		t.Fatal(err)
	}
	sd, err := ParseSigned(der)
	if err != nil {
		t.Fatal(err)
	}
	attrs := sd.Signers[0].SignedAttrs
	if !bytes.Contains(attrs, want) || bytes.Contains(attrs, def) {
		t.Errorf("signed attributes %x lack %x or hold the default list", attrs, want)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := sd.Verify(VerifyOptions{Roots: roots}); err != nil {
		t.Error(err)
	}
}
