package directory

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"crypto/x509/pkix"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/internal/ci"
	"appliance/smime"
)

const learnEntity = "Content-Type: text/plain; charset=us-ascii\r\n\r\nhello from olivia\r\n"

// signedMessage is what olivia's client would send: multipart/signed made
// with package cms, announcing caps.
func signedMessage(t *testing.T, from string, leaf *x509.Certificate, caps []cms.AlgorithmIdentifier, extra ...cms.Attribute) []byte {
	t.Helper()
	p := testPKI(t)
	sig, err := cms.Sign(p.leafKey, []*x509.Certificate{leaf, p.interA}, []byte(learnEntity),
		cms.SignOptions{Detached: true, Capabilities: caps, Extra: extra, SigningTime: t0})
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte("From: Olivia <"+from+">\r\nTo: alice@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"),
		smime.SignedEntity([]byte(learnEntity), sig, "sha-256")...)
}

// opensslSigned signs with `openssl cms -sign`: detached multipart/signed,
// or opaque signed-data with nodetach.
func opensslSigned(t *testing.T, from string, leaf *x509.Certificate, nodetach bool) []byte {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		ci.Skipf(t, "openssl not installed")
	}
	p := testPKI(t)
	dir := t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(p.leafKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	writeFile(t, filepath.Join(dir, "cert.pem"), pemOf(leaf))
	writeFile(t, filepath.Join(dir, "inter.pem"), pemOf(p.interA))
	writeFile(t, filepath.Join(dir, "in.txt"), []byte("hello from olivia\n"))
	args := []string{"cms", "-sign", "-in", filepath.Join(dir, "in.txt"), "-signer", filepath.Join(dir, "cert.pem"),
		"-inkey", filepath.Join(dir, "key.pem"), "-certfile", filepath.Join(dir, "inter.pem"), "-md", "sha256",
		"-from", from, "-to", "alice@example.test", "-subject", "hi"}
	if nodetach {
		args = append(args, "-nodetach")
	}
	out, err := exec.Command("openssl", args...).Output()
	if err != nil {
		t.Fatalf("openssl cms -sign: %v", err)
	}
	return out
}

func TestLearn(t *testing.T) {
	p := testPKI(t)
	gcmFirst := []cms.AlgorithmIdentifier{{Algorithm: oid.AES256GCM}, {Algorithm: oid.AES256CBC}}
	cbcOnly := []cms.AlgorithmIdentifier{{Algorithm: oid.AES256CBC}, {Algorithm: oid.AES128CBC}}
	olivia := p.leaf(leafTemplate("olivia", "olivia@example.org"))
	oliviaEnc := p.leaf(leafTemplate("olivia encryption", "olivia@example.org"))
	signOnlyTmpl := leafTemplate("olivia signing", "olivia@example.org")
	signOnlyTmpl.KeyUsage = 0x1 // digitalSignature only
	signOnly := p.leaf(signOnlyTmpl)
	stranger := mustCert(leafTemplate("stranger", "olivia@example.org"), p.rootB, p.leafKey, p.rootBKey)

	// SMIMEEncryptionKeyPreference [0] issuerAndSerialNumber naming oliviaEnc.
	serial, _ := asn1.Marshal(oliviaEnc.SerialNumber)
	ias := append(append([]byte{}, oliviaEnc.RawIssuer...), serial...)
	pref, _ := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: ias})
	withPref := func() []byte {
		p := testPKI(t)
		sig, err := cms.Sign(p.leafKey, []*x509.Certificate{olivia, oliviaEnc, p.interA}, []byte(learnEntity),
			cms.SignOptions{Detached: true, Capabilities: gcmFirst, SigningTime: t0,
				Extra: []cms.Attribute{{Type: oid.AttrEncrypKeyPref, Value: pref}}})
		if err != nil {
			t.Fatal(err)
		}
		return append([]byte("From: olivia@example.org\r\nMIME-Version: 1.0\r\n"), smime.SignedEntity([]byte(learnEntity), sig, "sha-256")...)
	}

	tampered := signedMessage(t, "olivia@example.org", olivia, gcmFirst)
	tampered = bytes.Replace(tampered, []byte("hello from olivia"), []byte("hello from mallory"), 1)

	for _, tt := range []struct {
		name        string
		msg         []byte
		wantErr     error
		wantProfile string
		wantCert    *x509.Certificate
		wantCaps    int
		unusable    error
	}{
		{name: "ok multipart/signed announcing AES-256-GCM is modern", msg: signedMessage(t, "olivia@example.org", olivia, gcmFirst),
			wantProfile: ProfileModern, wantCert: olivia, wantCaps: 2},
		{name: "ok CBC only is compat", msg: signedMessage(t, "olivia@example.org", olivia, cbcOnly),
			wantProfile: ProfileCompat, wantCert: olivia, wantCaps: 2},
		{name: "ok openssl cms -sign detached is compat", msg: opensslSigned(t, "olivia@example.org", olivia, false),
			wantProfile: ProfileCompat, wantCert: olivia},
		{name: "ok openssl cms -sign opaque signed-data", msg: opensslSigned(t, "olivia@example.org", olivia, true),
			wantProfile: ProfileCompat, wantCert: olivia},
		{name: "ok encryption key preference picks the other certificate", msg: withPref(),
			wantProfile: ProfileModern, wantCert: oliviaEnc, wantCaps: 2},
		{name: "ok signing-only certificate is filed with a warning", msg: signedMessage(t, "olivia@example.org", signOnly, gcmFirst),
			wantProfile: ProfileModern, wantCert: signOnly, wantCaps: 2, unusable: ErrKeyUsage},
		{name: "fail From is not the signer", msg: signedMessage(t, "mallory@example.org", olivia, gcmFirst), wantErr: ErrAddressMismatch},
		{name: "fail tampered content", msg: tampered, wantErr: ErrSignature},
		{name: "fail signer from an unknown CA", msg: signedMessage(t, "olivia@example.org", stranger, gcmFirst), wantErr: ErrSignature},
		{name: "fail not signed", msg: []byte("From: olivia@example.org\r\nContent-Type: text/plain\r\n\r\nhi\r\n"), wantErr: ErrNotSignedMessage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			d := f.open(t, t0)
			l, err := d.Learn(tt.msg)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if ents, _ := os.ReadDir(filepath.Join(f.certs, "learnt")); len(ents) != 0 {
					t.Errorf("files written on failure: %v", ents)
				}
				return
			}
			if err != nil {
				t.Fatalf("Learn: %v", err)
			}
			if !l.Cert.Equal(tt.wantCert) || l.Profile != tt.wantProfile {
				t.Errorf("learnt %s profile %q, want %s %q", l.Cert.Subject, l.Profile, tt.wantCert.Subject, tt.wantProfile)
			}
			if tt.wantCaps != 0 && len(l.Capabilities) != tt.wantCaps {
				t.Errorf("capabilities %v", l.Capabilities)
			}
			if !errors.Is(l.Unusable, tt.unusable) || (tt.unusable == nil) != (l.Unusable == nil) {
				t.Errorf("Unusable = %v, want %v", l.Unusable, tt.unusable)
			}
			// The sidecar is JSON a person can read.
			var sc LearntCaps
			if b, err := os.ReadFile(l.CapsFile); err != nil || json.Unmarshal(b, &sc) != nil || sc.Address != "olivia@example.org" || sc.Profile != tt.wantProfile {
				t.Errorf("sidecar %q: %+v %v", l.CapsFile, sc, err)
			}
			// Learn reloaded: the next lookup uses it, with the profile.
			valid, _, err := d.LookupContext(t.Context(), "Olivia@Example.ORG")
			if err != nil {
				t.Fatal(err)
			}
			if tt.unusable != nil {
				if len(valid) != 0 {
					t.Fatalf("unusable certificate offered: %v", valid)
				}
				return
			}
			if len(valid) != 1 || !valid[0].Cert.Equal(tt.wantCert) || valid[0].Profile != tt.wantProfile {
				t.Fatalf("lookup after learn: %+v", valid)
			}
			if la, ok := d.LearntFor("olivia@example.org"); !ok || la.Profile != tt.wantProfile || !strings.HasSuffix(la.File, capsSuffix) {
				t.Errorf("LearntFor = %+v, %v", la, ok)
			}
			// A fresh Open (the daemon after SIGHUP or restart) reads the same.
			d2 := f.open(t, t0)
			if probs := d2.Problems(); len(probs) != 0 {
				t.Errorf("problems after learning: %v", probs)
			}
			if v, _ := d2.Lookup("olivia@example.org"); len(v) != 1 || v[0].Profile != tt.wantProfile {
				t.Errorf("after reopen: %+v", v)
			}
		})
	}
}

func TestProfileFromCapabilities(t *testing.T) {
	for _, tt := range []struct {
		name string
		caps []asn1.ObjectIdentifier
		want string
	}{
		{"ok nothing known", nil, ""},
		{"ok GCM anywhere is modern", []asn1.ObjectIdentifier{oid.AES256CBC, oid.AES256GCM}, ProfileModern},
		{"ok CBC is compat", []asn1.ObjectIdentifier{oid.AES256CBC}, ProfileCompat},
		{"ok AES-128-GCM alone is compat (the appliance encrypts with AES-256)", []asn1.ObjectIdentifier{oid.AES128GCM}, ProfileCompat},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ProfileFromCapabilities(tt.caps); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProfileFromCertificateExtension(t *testing.T) {
	p := testPKI(t)
	f := newFixture(t)
	ext, err := asn1.Marshal([]smimeCapability{{ID: oid.AES256GCM}, {ID: oid.AES256CBC}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := leafTemplate("caps", "caps@example.test")
	tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkixExtension(oidSMIMECapabilities, ext))
	f.add(t, "caps.pem", p.leaf(tmpl))
	f.add(t, "plain.pem", p.leaf(leafTemplate("plain", "plain@example.test")))
	d := f.open(t, t0)
	if v, _ := d.Lookup("caps@example.test"); len(v) != 1 || v[0].Profile != ProfileModern {
		t.Errorf("caps: %+v", v)
	}
	if v, _ := d.Lookup("plain@example.test"); len(v) != 1 || v[0].Profile != "" {
		t.Errorf("plain: %+v", v)
	}
}

func FuzzSignedAttributes(f *testing.F) {
	p := testPKI(f)
	sig, err := cms.Sign(p.leafKey, []*x509.Certificate{p.interA}, []byte("x"), cms.SignOptions{Detached: true})
	if err == nil {
		if sd, err := cms.ParseSigned(sig); err == nil {
			f.Add(sd.Signers[0].SignedAttrs)
		}
	}
	f.Add([]byte{0xa0, 0x00})
	f.Add([]byte{0xa0, 0x03, 0x30, 0x01, 0x06})
	f.Fuzz(func(t *testing.T, raw []byte) {
		attrs, err := signedAttributes(raw)
		if err != nil {
			return
		}
		encryptionKeyPreference(attrs[oid.AttrEncrypKeyPref.String()], []*x509.Certificate{p.interA})
	})
}

func pkixExtension(id asn1.ObjectIdentifier, value []byte) pkix.Extension {
	return pkix.Extension{Id: id, Value: value}
}
