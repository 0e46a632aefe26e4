package smime

// Tests that kill mutants scripts/mutation.sh found living in the smime files the smime-head
// target did not reach (the smime-tail target: parse.go, post.go, protected.go, report.go,
// reportprotected.go, reporttext.go, senders.go, signed.go; docs/testing.md, "Mutation
// testing").

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"

	"github.com/emersion/go-message/textproto"
)

// m4Pkcs7Entity is an application/pkcs7-mime entity of der, labelled mt and, unless st is "",
// smime-type=st.
func m4Pkcs7Entity(mt, st string, der []byte) []byte {
	ct := "Content-Type: " + mt
	if st != "" {
		ct += "; smime-type=" + st
	}
	return []byte(ct + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(der) + "\r\n")
}

// m4Envelope is an EnvelopedData (AuthEnvelopedData when auth is set) of the 10 octets
// "ciphertext" with one KeyTransRecipientInfo (issuer and serial 1, rsaEncryption).
func m4Envelope(t *testing.T, auth bool) []byte {
	t.Helper()
	rsaOID := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01}
	ktri := m2TLV(0x30, bytes.Join([][]byte{{0x02, 0x01, 0x00}, m2TLV(0x30, []byte{0x30, 0x00, 0x02, 0x01, 0x01}),
		m2TLV(0x30, append(rsaOID, 0x05, 0x00)), m2TLV(0x04, bytes.Repeat([]byte{9}, 256))}, nil))
	ec := &cms.EncryptedContent{Algorithm: cms.AES256CBC, IV: bytes.Repeat([]byte{7}, 16), Ciphertext: []byte("ciphertext")}
	if auth {
		ec = &cms.EncryptedContent{Algorithm: cms.AES256GCM, IV: bytes.Repeat([]byte{7}, 12), Ciphertext: []byte("ciphertext"), Tag: bytes.Repeat([]byte{8}, 16)}
	}
	enc, err := cms.Envelope(ec, []*cms.RecipientInfo{{Raw: ktri}})
	if err != nil {
		t.Fatal(err)
	}
	return enc.Bytes()
}

// TestReadPost: ReadPost takes a post's outer signature (multipart/signed or signed-data) off
// to find what it carries, reads the signature's expansion history, says whether the content is
// encrypted (by its smime-type, or, unlabelled, by its DER), and rewrites a plain post's
// signature without the certificates outside the signer's chain, only when there are such.
func TestReadPost(t *testing.T) {
	cert, key := softhsmtest.SelfSigned(t, "poster")
	other, _ := softhsmtest.SelfSigned(t, "someone else")
	listCert, _ := softhsmtest.SelfSigned(t, "upstream list")
	hist, err := cms.ExtendExpansionHistory(nil, listCert, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	sign := func(t *testing.T, chain []*x509.Certificate, content []byte, detached bool) []byte {
		t.Helper()
		der, err := cms.Sign(key, chain, content, cms.SignOptions{Detached: detached, SigningTime: time.Unix(1700000000, 0), Extra: []cms.Attribute{hist}})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	envDER := m4Envelope(t, false)
	if _, err := cms.ParseEnveloped(envDER); err != nil {
		t.Fatal(err)
	}
	plain := []byte("Content-Type: text/plain\r\n\r\nhello list\r\n")
	outer := "From: poster@example.test\r\nTo: list@example.test\r\nSubject: s\r\n"
	msg := func(entity []byte) []byte { return append([]byte(outer), entity...) }
	certsOf := func(t *testing.T, der []byte) int {
		t.Helper()
		sd, err := cms.ParseSigned(der)
		if err != nil {
			t.Fatal(err)
		}
		return len(sd.Certificates)
	}

	t.Run("plain", func(t *testing.T) {
		p, err := ReadPost(msg(plain))
		if err != nil || !bytes.Equal(p.Entity, plain) || p.History != nil || p.Enveloped != nil {
			t.Fatalf("%+v, %v", p, err)
		}
	})
	// readSignedPost reads a signed post of one layer; without a certificate to leave out
	// (extra false) its entity must come back as it was, and it returns nil.
	readSignedPost := func(t *testing.T, entity []byte, extra bool) *Post {
		t.Helper()
		p, err := ReadPost(msg(entity))
		if err != nil {
			t.Fatal(err)
		}
		if len(p.History) != 1 || p.Enveloped != nil {
			t.Fatalf("history %d, enveloped %v", len(p.History), p.Enveloped)
		}
		if !extra {
			if !bytes.Equal(p.Entity, entity) {
				t.Fatalf("entity rewritten with nothing to leave out:\n%s", p.Entity)
			}
			return nil
		}
		return p
	}
	for _, extra := range []bool{false, true} {
		chain := []*x509.Certificate{cert}
		if extra {
			chain = append(chain, other)
		}
		t.Run("multipart/signed, another certificate "+map[bool]string{false: "no", true: "yes"}[extra], func(t *testing.T) {
			entity := SignedEntity(plain, sign(t, chain, plain, true), "sha-256")
			p := readSignedPost(t, entity, extra)
			if p == nil {
				return
			}
			s, err := ParseSigned(p.Entity)
			if err != nil || !bytes.Equal(s.Content, plain) || s.MicAlg != "sha-256" {
				t.Fatalf("rewritten entity: %v\n%s", err, p.Entity)
			}
			if n := certsOf(t, s.Signature); n != 1 {
				t.Fatalf("rewritten signature has %d certificates, want 1", n)
			}
		})
		t.Run("signed-data, another certificate "+map[bool]string{false: "no", true: "yes"}[extra], func(t *testing.T) {
			entity := opaqueSignedEntity(sign(t, chain, plain, false))
			p := readSignedPost(t, entity, extra)
			if p == nil {
				return
			}
			pkg, err := Parse(bytes.NewReader(p.Entity), 1<<20)
			if err != nil || pkg.SMIMEType != TypeSignedData {
				t.Fatalf("rewritten entity: %v\n%s", err, p.Entity)
			}
			sd, err := cms.ParseSigned(pkg.DER)
			if err != nil || !bytes.Equal(sd.Content, plain) || len(sd.Certificates) != 1 {
				t.Fatalf("rewritten signature: %v, %d certificates, content %q", err, len(sd.Certificates), sd.Content)
			}
		})
	}
	t.Run("signed-data without its content", func(t *testing.T) {
		entity := opaqueSignedEntity(sign(t, []*x509.Certificate{cert, other}, plain, true))
		p, err := ReadPost(msg(entity))
		if err != nil || !bytes.Equal(p.Entity, entity) || len(p.History) != 1 {
			t.Fatalf("%+v, %v", p, err)
		}
	})
	// What a signature carries: encrypted or not, by label or DER. The signature has another
	// certificate, which an encrypted post keeps.
	for _, tt := range []struct {
		name, mt, st string
		der          []byte
		enveloped    bool
		fail         bool
	}{
		{"enveloped-data", "application/pkcs7-mime", "enveloped-data", envDER, true, false},
		{"x-pkcs7-mime", "application/x-pkcs7-mime", "enveloped-data", envDER, true, false},
		{"authEnveloped-data", "application/pkcs7-mime", "authEnveloped-data", envDER, true, false},
		{"unlabelled", "application/pkcs7-mime", "", envDER, true, false},
		{"unlabelled, not enveloped", "application/pkcs7-mime", "", sign(t, []*x509.Certificate{cert}, plain, false), false, false},
		{"labelled signed-data", "application/pkcs7-mime", "signed-data", envDER, false, false},
		{"enveloped-data, not enveloped", "application/pkcs7-mime", "enveloped-data", sign(t, []*x509.Certificate{cert}, plain, false), false, true},
		{"octet-stream", "application/octet-stream", "enveloped-data", envDER, false, false},
	} {
		t.Run("signed "+tt.name, func(t *testing.T) {
			inner := m4Pkcs7Entity(tt.mt, tt.st, tt.der)
			entity := SignedEntity(inner, sign(t, []*x509.Certificate{cert, other}, inner, true), "sha-256")
			p, err := ReadPost(msg(entity))
			if tt.fail {
				if err == nil {
					t.Fatalf("taken: %+v", p)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (p.Enveloped != nil) != tt.enveloped || len(p.History) != 1 {
				t.Fatalf("enveloped %v, want %v; history %d", p.Enveloped != nil, tt.enveloped, len(p.History))
			}
			if tt.enveloped && !bytes.Equal(p.Entity, entity) {
				t.Fatalf("an encrypted post's entity rewritten:\n%s", p.Entity)
			}
			if !tt.enveloped {
				s, err := ParseSigned(p.Entity)
				if err != nil || !bytes.Equal(s.Content, inner) || certsOf(t, s.Signature) != 1 {
					t.Fatalf("plain post's entity not rewritten without the other certificate: %v\n%s", err, p.Entity)
				}
			}
		})
	}
	t.Run("unsigned enveloped", func(t *testing.T) {
		entity := m4Pkcs7Entity("application/pkcs7-mime", "enveloped-data", envDER)
		p, err := ReadPost(msg(entity))
		if err != nil || p.Enveloped == nil || !bytes.Equal(p.Entity, entity) {
			t.Fatalf("%+v, %v", p, err)
		}
	})
}

// TestProtectLargeEntity: the body of an entity larger than the header reader's buffer is kept
// whole.
func TestProtectLargeEntity(t *testing.T) {
	body := strings.Repeat("a line of the body, long enough to fill the buffer\r\n", 200)
	entity := []byte("Content-Type: text/plain\r\n\r\n" + body)
	out, err := Protect(entity, outerHeader(t, "Subject: s\r\n"), HPClear, outerHeader(t, "From: a@example.test\r\n"), false)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out, []byte("\r\n\r\n"+body)) || bytes.Count(out, []byte("a line")) != 200 {
		t.Fatalf("body not kept: %d bytes out of %d", len(out), len(entity))
	}
}

// TestProtectLegacyTopLevel: a top-level multipart/alternative gets the legacy display element
// in every text alternative, a top-level multipart/mixed in its first part only.
func TestProtectLegacyTopLevel(t *testing.T) {
	parts := "--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n"
	for _, tt := range []struct {
		mt   string
		want int
	}{{"multipart/alternative", 2}, {"multipart/mixed", 1}} {
		entity := []byte("Content-Type: " + tt.mt + "; boundary=\"b\"\r\n\r\n" + parts)
		out, err := Protect(entity, outerHeader(t, "Subject: the subject\r\n"), HPCipher, outerHeader(t, "Subject: [...]\r\n"), true)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(out, []byte("Subject: the subject\r\n\r\n")); n != tt.want {
			t.Errorf("%s: %d display elements, want %d:\n%s", tt.mt, n, tt.want, out)
		}
	}
}

// TestFoldExact: a field line of exactly 78 characters stays whole; one of 79 breaks at its last
// space, and each line is at most 78 characters.
func TestFoldExact(t *testing.T) {
	line78 := "HP-Outer: To: " + strings.Repeat("abcdefg ", 7) + "abcdefghi" // 14 + 56 + 8
	line78 = line78[:78]
	if len(line78) != 78 || strings.HasSuffix(line78, " ") {
		t.Fatalf("test line of %d: %q", len(line78), line78)
	}
	if got := fold(line78); got != line78 {
		t.Errorf("78 characters folded: %q", got)
	}
	line79 := line78 + "x"
	want := line79[:strings.LastIndexByte(line79, ' ')] + "\r\n" + line79[strings.LastIndexByte(line79, ' '):]
	if got := fold(line79); got != want {
		t.Errorf("79 characters: %q, want %q", got, want)
	}
}

// TestLegacyTextOctet80: a Subject with the octet 0x80 is not ASCII, so a us-ascii 7bit body
// gets no legacy display element.
func TestLegacyTextOctet80(t *testing.T) {
	if b := legacyText("a\x80", false, "us-ascii", "7bit"); b != nil {
		t.Errorf("0x80 taken as ASCII: %q", b)
	}
	if b := legacyText("a\x7f", false, "us-ascii", "7bit"); b == nil {
		t.Error("0x7f not taken as ASCII")
	}
}

// TestProtectLegacyDepth: the legacy display element goes into a text part three multiparts
// deep, not four; a large first part keeps its body whole.
func TestProtectLegacyDepth(t *testing.T) {
	nest := func(levels int, leaf string) string {
		e := leaf
		for i := levels; i >= 1; i-- {
			b := "b" + string(rune('0'+i))
			e = "Content-Type: multipart/mixed; boundary=\"" + b + "\"\r\n\r\n--" + b + "\r\n" + e + "\r\n--" + b + "--\r\n"
		}
		return e
	}
	leaf := "Content-Type: text/plain\r\n\r\nthe text"
	protected := outerHeader(t, "Subject: the subject\r\n")
	obscured := outerHeader(t, "Subject: [...]\r\n")
	for levels, want := range map[int]int{1: 1, 3: 1, 4: 0} {
		out, err := Protect([]byte(nest(levels, leaf)), protected, HPCipher, obscured, true)
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(out, []byte("Subject: the subject\r\n\r\nthe text")); n != want {
			t.Errorf("%d deep: %d display elements, want %d:\n%s", levels, n, want, out)
		}
	}
	body := strings.Repeat("a line of the body, long enough to fill the buffer\r\n", 200)
	out, err := Protect([]byte(nest(1, "Content-Type: text/plain\r\n\r\n"+body)), protected, HPCipher, obscured, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte("Subject: the subject\r\n\r\n"+body)) {
		t.Errorf("large part not kept whole:\n%.300s", out)
	}
}

// TestInspectEnvelope: the leak audit of a client-encrypted message lists its RecipientInfo
// (issuer and serial, key encryption, owner), counts it unknown when the directory names no
// owner, reveals the owner it names, and reports the encrypted content's size, for
// EnvelopedData and AuthEnvelopedData; a top-level signed-data message is "signed"; a
// Delivered-To or X-Original-To that is no address is still revealed as written, a Return-Path
// never.
func TestInspectEnvelope(t *testing.T) {
	msg := append([]byte("From: a@example.test\r\nTo: b@example.test\r\nReturn-Path: not an address\r\n"+
		"Delivered-To: not an address either\r\nX-Original-To: nor this\r\n"), m4Pkcs7Entity("application/pkcs7-mime", "enveloped-data", m4Envelope(t, false))...)
	for _, owner := range []string{"", "c@example.test"} {
		r, err := Inspect("m", msg, func(*cms.RecipientInfo) string { return owner })
		if err != nil {
			t.Fatal(err)
		}
		want := ReportRecipient{Kind: "keytrans", Issuer: "", Serial: "0x1", KeyEncAlg: "rsaEncryption (PKCS#1 v1.5)", Owner: owner}
		if r.Kind != TypeEnvelopedData || len(r.Recipients) != 1 || r.Recipients[0] != want || r.EncryptedSize != 10 || r.Envelopes != 1 {
			t.Fatalf("owner %q: %+v", owner, r)
		}
		if len(r.Layers) != 1 || len(r.Layers[0].RIs) != 1 || r.Layers[0].RIs[0] != want || r.Layers[0].Error != "" {
			t.Fatalf("owner %q: layers %+v", owner, r.Layers)
		}
		if len(r.Headers) != 5 || len(r.Headers[2].Addresses) != 1 || r.Headers[2].Addresses[0] != "not an address" {
			t.Fatalf("headers %+v", r.Headers)
		}
		wantRevealed := []string{"a@example.test", "b@example.test", "nor this", "not an address either"}
		wantUnknown := 1
		if owner != "" {
			wantRevealed = []string{"a@example.test", "b@example.test", "c@example.test", "nor this", "not an address either"}
			wantUnknown = 0
		}
		if strings.Join(r.Revealed, ",") != strings.Join(wantRevealed, ",") || r.Unknown != wantUnknown {
			t.Errorf("owner %q: revealed %q, unknown %d; want %q, %d", owner, r.Revealed, r.Unknown, wantRevealed, wantUnknown)
		}
	}
	auth := append([]byte("From: a@example.test\r\n"), m4Pkcs7Entity("application/pkcs7-mime", "authEnveloped-data", m4Envelope(t, true))...)
	if r, err := Inspect("a", auth, func(*cms.RecipientInfo) string { return "" }); err != nil || r.Kind != TypeAuthEnvelopedData ||
		len(r.Recipients) != 1 || r.Recipients[0].Serial != "0x1" || r.EncryptedSize != 10 || r.Envelopes != 1 {
		t.Errorf("authEnveloped-data: %+v, %v", r, err)
	}
	cert, key := softhsmtest.SelfSigned(t, "signer")
	der, err := cms.Sign(key, []*x509.Certificate{cert}, []byte("Content-Type: text/plain\r\n\r\nx\r\n"), cms.SignOptions{})
	if err != nil {
		t.Fatal(err)
	}
	signed := append([]byte("From: a@example.test\r\n"), opaqueSignedEntity(der)...)
	if r, err := Inspect("s", signed, func(*cms.RecipientInfo) string { return "" }); err != nil || r.Kind != "signed" {
		t.Errorf("signed-data: %+v, %v", r, err)
	}
}

// TestHeaderEnvelopeNoFrom: a header without From has no envelope sender (and does not fail).
func TestHeaderEnvelopeNoFrom(t *testing.T) {
	from, rcpts, err := HeaderEnvelope([]byte("To: b@example.test\r\n\r\nbody\r\n"))
	if err != nil || from != "" || len(rcpts) != 1 || rcpts[0] != "b@example.test" {
		t.Errorf("%q, %q, %v", from, rcpts, err)
	}
}

// TestReportWriteTextRefused: a refused message's reason is printed, and only then.
func TestReportWriteTextRefused(t *testing.T) {
	for _, refused := range []string{"", "the reason"} {
		var b bytes.Buffer
		(&Report{File: "f", Kind: "k", Refused: refused}).WriteText(&b, nil)
		want := "f: k\n"
		if refused != "" {
			want += "  refused: the reason\n"
		}
		want += "  reveals: \n"
		if b.String() != want {
			t.Errorf("%q, want %q", b.String(), want)
		}
	}
}

// TestReportWriteTextLayers: each layer's line (the message as "message", the label only when
// there is one), its error and fields only when it has them, and its RecipientInfos numbered on
// across layers, by subject key identifier or issuer and serial, the owner or "unknown".
func TestReportWriteTextLayers(t *testing.T) {
	r := &Report{File: "f", Kind: "signed", Revealed: []string{"x@e", "y@e"}, Layers: []ReportLayer{
		{Type: "signed-data"},
		{Path: "/signed", MediaType: "application/pkcs7-mime", Type: "enveloped-data", Error: "bad", Fields: []string{"To", "Cc"},
			RIs: []ReportRecipient{{Kind: "keytrans", SubjectKeyID: "0a0b", KeyEncAlg: "alg", Owner: "x@e"}, {Kind: "keytrans", Issuer: "CN=i", Serial: "0x2", KeyEncAlg: "alg2"}}},
		{Path: "/x", MediaType: "application/pkcs7-mime", Label: "authEnveloped-data", Type: "authEnveloped-data",
			RIs: []ReportRecipient{{Kind: "keyagree", SubjectKeyID: "01", KeyEncAlg: "k", Owner: "y@e"}}},
	}}
	want := "f: signed\n" +
		"  layer message: signed-data\n" +
		"  layer /signed: enveloped-data (labelled application/pkcs7-mime)\n" +
		"    cannot read: bad\n" +
		"    carries To, Cc\n" +
		"  recipientinfo #1 keytrans -> x@e [ski 0a0b; alg]\n" +
		"  recipientinfo #2 keytrans -> (unknown to the directory) [CN=i serial 0x2; alg2]\n" +
		"  layer /x: authEnveloped-data (labelled application/pkcs7-mime; smime-type=authEnveloped-data)\n" +
		"  recipientinfo #3 keyagree -> y@e [ski 01; k]\n" +
		"  reveals: x@e, y@e\n"
	var b bytes.Buffer
	r.WriteText(&b, nil)
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// TestParseRecipientKey: an RSA key in PKCS #8 or PKCS #1 and the first certificate are read
// from PEM blocks in any order; no key, a key that is not RSA or a malformed key is an error.
func TestParseRecipientKey(t *testing.T) {
	cert, key := softhsmtest.SelfSigned(t, "recipient")
	other, _ := softhsmtest.SelfSigned(t, "second")
	pk8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	ed8, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}
	blk := func(typ string, b []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}) }
	cat := func(b ...[]byte) []byte { return bytes.Join(b, nil) }
	for _, tt := range []struct {
		name     string
		in       []byte
		wantCert *x509.Certificate
		fail     bool
	}{
		{"pkcs8 and certificates", cat(blk("CERTIFICATE", cert.Raw), blk("PRIVATE KEY", pk8), blk("CERTIFICATE", other.Raw)), cert, false},
		{"pkcs1 alone", blk("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key)), nil, false},
		{"no key", blk("CERTIFICATE", cert.Raw), nil, true},
		{"ed25519", blk("PRIVATE KEY", ed8), nil, true},
		{"bad pkcs8", blk("PRIVATE KEY", []byte{0x30, 0x00}), nil, true},
		{"bad pkcs1", blk("RSA PRIVATE KEY", []byte{0x30, 0x00}), nil, true},
	} {
		k, c, err := ParseRecipientKey(tt.in)
		if tt.fail {
			if err == nil || k != nil || c != nil {
				t.Errorf("%s: %v, %v, %v; want an error", tt.name, k != nil, c != nil, err)
			}
			continue
		}
		if err != nil || k == nil || !k.Equal(key) || (c == nil) != (tt.wantCert == nil) || (c != nil && !c.Equal(tt.wantCert)) {
			t.Errorf("%s: key %v, cert %v, %v", tt.name, k != nil, c, err)
		}
	}
}

// TestProtectedReportWriteText: what a report says about the inside of a package, for no
// envelope, no key, an error, no header protection and a protected header.
func TestProtectedReportWriteText(t *testing.T) {
	full := &ProtectedReport{Mode: "cipher", Header: []ReportField{{Field: "Subject", Value: "s"}}, Outer: []string{"Subject: [...]", "To: a"}, Legacy: true}
	for _, tt := range []struct {
		pr        *ProtectedReport
		envelopes int
		want      string
	}{
		{full, 0, ""},
		{nil, 1, "  inside: not read (give a recipient's key with -key to see the protected header)\n"},
		{&ProtectedReport{Error: "e", Mode: "cipher"}, 1, "  inside: cannot decrypt: e\n"},
		{&ProtectedReport{}, 1, "  inside: no protected header (no hp parameter)\n"},
		{&ProtectedReport{Mode: "clear"}, 1, "  inside: protected header, hp=clear\n"},
		{full, 2, "  inside: protected header, hp=cipher\n    Subject:     s\n" +
			"    outer header as sent (HP-Outer): Subject: [...]; To: a\n    legacy display element in the body\n"},
	} {
		var b bytes.Buffer
		tt.pr.WriteText(&b, tt.envelopes)
		if b.String() != tt.want {
			t.Errorf("%+v, %d envelopes: %q, want %q", tt.pr, tt.envelopes, b.String(), tt.want)
		}
	}
}

// TestParseSignedTransportPadding: delimiter lines with blanks before their CRLF (transport
// padding, RFC 2046) still start the next part right after them; a close delimiter may end the
// message with a CR alone.
func TestParseSignedTransportPadding(t *testing.T) {
	content := "Content-Type: text/plain\r\n\r\nsigned text"
	sig := []byte{0x30, 0x03, 0x02, 0x01, 0x07}
	msg := "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n" +
		"--b  \r\n" + content + "\r\n--b \t\r\n" +
		"Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		base64.StdEncoding.EncodeToString(sig) + "\r\n--b--   \r\n"
	s, err := ParseSigned([]byte(msg))
	if err != nil || string(s.Content) != content || !bytes.Equal(s.Signature, sig) {
		t.Fatalf("%q, % x, %v", s.Content, s.Signature, err)
	}
	// A close delimiter followed by a lone CR at the very end.
	msg = strings.TrimSuffix(msg, "   \r\n") + "\r"
	s, err = ParseSigned([]byte(msg))
	if err != nil || string(s.Content) != content || !bytes.Equal(s.Signature, sig) {
		t.Fatalf("ending in CR: %q, % x, %v", s.Content, s.Signature, err)
	}
}

// TestObscureOuterKeepsRaw: a field hcp_baseline leaves as it is keeps its raw bytes, its odd
// spacing included; the Subject is replaced.
func TestObscureOuterKeepsRaw(t *testing.T) {
	h := outerHeader(t, "To:   a@example.test\r\nSubject: secret\r\n")
	ObscureOuter(&h)
	var b bytes.Buffer
	if err := textproto.WriteHeader(&b, h); err != nil {
		t.Fatal(err)
	}
	if want := "To:   a@example.test\r\nSubject: [...]\r\n\r\n"; b.String() != want {
		t.Errorf("%q, want %q", b.String(), want)
	}
}

// TestInspectKeyAgree: a key-agreement RecipientInfo for one certificate is attributed like key
// transport (its serial, its owner); one shared by several recipients names no one.
func TestInspectKeyAgree(t *testing.T) {
	wrapOID := []byte{0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2d} // aes256-wrap
	rek := func(serial byte) []byte {
		return m2TLV(0x30, append(m2TLV(0x30, []byte{0x30, 0x00, 0x02, 0x01, serial}), m2TLV(0x04, bytes.Repeat([]byte{5}, 40))...))
	}
	kari := func(serials ...byte) []byte {
		var reks []byte
		for _, s := range serials {
			reks = append(reks, rek(s)...)
		}
		return m2TLV(0xa1, bytes.Join([][]byte{{0x02, 0x01, 0x03}, m2TLV(0xa0, m2TLV(0xa1, []byte{0x30, 0x00})),
			m2TLV(0x30, wrapOID), m2TLV(0x30, reks)}, nil))
	}
	ec := &cms.EncryptedContent{Algorithm: cms.AES256CBC, IV: bytes.Repeat([]byte{7}, 16), Ciphertext: []byte("ciphertext")}
	enc, err := cms.Envelope(ec, []*cms.RecipientInfo{{Raw: kari(2)}, {Raw: kari(3, 4)}})
	if err != nil {
		t.Fatal(err)
	}
	msg := append([]byte("From: a@example.test\r\n"), m4Pkcs7Entity("application/pkcs7-mime", "enveloped-data", enc.Bytes())...)
	r, err := Inspect("k", msg, func(*cms.RecipientInfo) string { return "k@example.test" })
	if err != nil {
		t.Fatal(err)
	}
	one := ReportRecipient{Kind: "keyagree", Serial: "0x2", KeyEncAlg: "2.16.840.1.101.3.4.1.45", Owner: "k@example.test"}
	shared := ReportRecipient{Kind: "keyagree"}
	if len(r.Recipients) != 2 || r.Unknown != 1 || !(r.Recipients[0] == one && r.Recipients[1] == shared || r.Recipients[0] == shared && r.Recipients[1] == one) {
		t.Errorf("recipients %+v, unknown %d; want %+v and %+v, 1", r.Recipients, r.Unknown, one, shared)
	}
}

// TestInspectProtectedOpenSSL: a package OpenSSL encrypted for a certificate is opened with its
// key and its protected header read; with another certificate's key the report says there is no
// RecipientInfo for it.
func TestInspectProtectedOpenSSL(t *testing.T) {
	cert, key := softhsmtest.SelfSigned(t, "reader")
	other, otherKey := softhsmtest.SelfSigned(t, "not a reader")
	pemFile := filepath.Join(t.TempDir(), "reader.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		if ci.On() {
			t.Fatal("openssl not found (CI set: a failure, not a skip)")
		}
		t.Skip("openssl not found")
	}
	payload := "Content-Type: text/plain; hp=\"cipher\"\r\nSubject: secret\r\nHP-Outer: Subject: [...]\r\n\r\nbody\r\n"
	cmd := exec.Command("openssl", "cms", "-encrypt", "-binary", "-aes-256-cbc", "-outform", "DER", "-recip", pemFile)
	cmd.Stdin = strings.NewReader(payload)
	der, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl cms -encrypt: %v", err)
	}
	msg := append([]byte("From: a@example.test\r\nSubject: [...]\r\n"), m4Pkcs7Entity("application/pkcs7-mime", "enveloped-data", der)...)
	pr := InspectProtected(msg, cert, key)
	if pr.Error != "" || pr.Mode != HPCipher || len(pr.Header) != 1 || pr.Header[0].Field != "Subject" || pr.Header[0].Value != "secret" ||
		len(pr.Outer) != 1 || pr.Outer[0] != "Subject: [...]" {
		t.Errorf("%+v", pr)
	}
	if pr := InspectProtected(msg, other, otherKey); !strings.HasPrefix(pr.Error, "no RecipientInfo for ") || pr.Mode != "" {
		t.Errorf("another key: %+v", pr)
	}
}
