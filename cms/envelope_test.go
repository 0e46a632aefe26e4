package cms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"

	"appliance/cms/oid"
	"appliance/internal/softhsmtest"
)

// build encrypts msg once and envelopes it for the named users.
func build(t testing.TB, env *softhsmtest.Env, alg ContentAlgorithm, opts KeyTransOptions, msg []byte, users ...string) (*EncryptedContent, []byte) {
	t.Helper()
	ctx := context.Background()
	key := newSoftKey(t)
	ec, err := Encrypt(ctx, key, alg, bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var ris []*RecipientInfo
	for _, u := range users {
		ri, err := KeyTransRecipient(ctx, key, env.Cert(t, u), opts)
		if err != nil {
			t.Fatal(err)
		}
		ris = append(ris, ri)
	}
	enc, err := Envelope(ec, ris)
	if err != nil {
		t.Fatal(err)
	}
	return ec, enc.Bytes()
}

var variants = []struct {
	name string
	alg  ContentAlgorithm
	opts KeyTransOptions
}{
	{"cbc issuer pkcs1", AES256CBC, KeyTransOptions{}},
	{"cbc ski pkcs1", AES256CBC, KeyTransOptions{ID: SubjectKeyID}},
	{"cbc issuer oaep-sha1", AES256CBC, KeyTransOptions{OAEPHash: crypto.SHA1}},
	{"cbc ski oaep-sha256", AES256CBC, KeyTransOptions{ID: SubjectKeyID, OAEPHash: crypto.SHA256}},
	{"gcm issuer oaep-sha256", AES256GCM, KeyTransOptions{OAEPHash: crypto.SHA256}},
	{"gcm ski oaep-sha1", AES256GCM, KeyTransOptions{ID: SubjectKeyID, OAEPHash: crypto.SHA1}},
	{"gcm ski pkcs1", AES256GCM, KeyTransOptions{ID: SubjectKeyID}},
}

func TestRoundTrip(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nhello bob and carol\r\n")
	for _, v := range variants {
		t.Run("ok "+v.name, func(t *testing.T) {
			_, der := build(t, env, v.alg, v.opts, msg, "bob", "carol")
			for _, u := range []string{"bob", "carol"} {
				got, err := softDecrypt(der, env.Cert(t, u), env.Key(t, u))
				if err != nil {
					t.Fatalf("%s: %v", u, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("%s: got %q", u, got)
				}
			}
			if _, err := softDecrypt(der, env.Cert(t, "dave"), env.Key(t, "dave")); !errors.Is(err, errNotRecipient) {
				t.Fatalf("dave: want errNotRecipient, got %v", err)
			}
			p, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			wantVersion, wantType := 0, oid.EnvelopedData
			if v.opts.ID == SubjectKeyID {
				wantVersion = 2
			}
			if v.alg == AES256GCM {
				wantVersion, wantType = 0, oid.AuthEnvelopedData
			}
			if p.Version != wantVersion || !p.ContentType.Equal(wantType) {
				t.Fatalf("version %d type %v, want %d %v", p.Version, p.ContentType, wantVersion, wantType)
			}
			for _, ri := range p.RecipientInfos {
				h, err := ri.OAEPHash()
				if err != nil || h != v.opts.OAEPHash {
					t.Fatalf("oaep hash %v, %v; want %v", h, err, v.opts.OAEPHash)
				}
			}
		})
	}
	t.Run("fail flipped gcm ciphertext", func(t *testing.T) {
		ec, _ := build(t, env, AES256GCM, KeyTransOptions{}, msg, "bob")
		ec.Ciphertext[3] ^= 1
		ris := mustRI(t, env, "bob")
		enc, _ := Envelope(ec, ris)
		if _, err := softDecrypt(enc.Bytes(), env.Cert(t, "bob"), env.Key(t, "bob")); err == nil {
			t.Fatal("tampered gcm content decrypted")
		}
	})
}

// mustRI makes a RecipientInfo with a fresh key (so it does not decrypt anything: for shape only).
func mustRI(t testing.TB, env *softhsmtest.Env, user string) []*RecipientInfo {
	ri, err := KeyTransRecipient(context.Background(), newSoftKey(t), env.Cert(t, user), KeyTransOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return []*RecipientInfo{ri}
}

func TestSharedContentDisjointPackages(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	msg := bytes.Repeat([]byte("shared body\r\n"), 1000)
	for _, alg := range []ContentAlgorithm{AES256CBC, AES256GCM} {
		t.Run("ok "+alg.String(), func(t *testing.T) {
			key := newSoftKey(t)
			ec, err := Encrypt(ctx, key, alg, bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if key.calls != 1 {
				t.Fatalf("content encrypted %d times", key.calls)
			}
			ri := func(u string) *RecipientInfo {
				r, err := KeyTransRecipient(ctx, key, env.Cert(t, u), KeyTransOptions{})
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			a, err := Envelope(ec, []*RecipientInfo{ri("bob"), ri("carol")})
			if err != nil {
				t.Fatal(err)
			}
			b, err := Envelope(ec, []*RecipientInfo{ri("dave")})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{"bob": true, "carol": true, "dave": false}
			for u, inA := range want {
				_, errA := softDecrypt(a.Bytes(), env.Cert(t, u), env.Key(t, u))
				_, errB := softDecrypt(b.Bytes(), env.Cert(t, u), env.Key(t, u))
				if (errA == nil) != inA || (errB == nil) == inA {
					t.Fatalf("%s: package a %v, package b %v", u, errA, errB)
				}
			}
			pa, _ := ParseEnveloped(a.Bytes())
			pb, _ := ParseEnveloped(b.Bytes())
			if !bytes.Equal(pa.EncryptedContentInfo, pb.EncryptedContentInfo) || !bytes.Equal(pa.MAC, pb.MAC) {
				t.Fatal("encryptedContentInfo differs between packages")
			}
			// Shared by reference: the packages hold ec.Ciphertext itself, not copies.
			for _, e := range []*Encoded{a, b} {
				shared := false
				for _, p := range e.parts {
					if len(p) > 0 && &p[0] == &ec.Ciphertext[0] {
						shared = true
					}
				}
				if !shared {
					t.Fatal("ciphertext copied into the package")
				}
			}
		})
	}
}

func TestEncoded(t *testing.T) {
	env := softhsmtest.Setup(t)
	ec, _ := build(t, env, AES256GCM, KeyTransOptions{}, []byte("x"), "bob")
	enc, err := Envelope(ec, mustRI(t, env, "bob"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	n, err := enc.WriteTo(&buf)
	if err != nil || int(n) != enc.Len() || !bytes.Equal(buf.Bytes(), enc.Bytes()) || len(enc.Bytes()) != enc.Len() {
		t.Fatalf("WriteTo %d, %v; Len %d; Bytes %d", n, err, enc.Len(), len(enc.Bytes()))
	}
}

func TestEnvelopedVersion(t *testing.T) {
	v0 := &RecipientInfo{Kind: KeyTrans, Version: 0, Raw: []byte{1}}
	v2 := &RecipientInfo{Kind: KeyTrans, Version: 2, Raw: []byte{1}}
	kari := &RecipientInfo{Kind: KeyAgree, Version: 3, Raw: []byte{1}}
	pwri := &RecipientInfo{Kind: Password, Version: 0, Raw: []byte{1}}
	tests := []struct {
		name  string
		ris   []*RecipientInfo
		extra bool
		want  int
	}{
		{"ok all v0", []*RecipientInfo{v0, v0}, false, 0},
		{"ok one v2", []*RecipientInfo{v0, v2}, false, 2},
		{"ok kari", []*RecipientInfo{v0, kari}, false, 2},
		{"ok pwri", []*RecipientInfo{v0, pwri}, false, 3},
		{"ok v0 with unprotected attributes", []*RecipientInfo{v0}, true, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := envelopedVersion(tt.ris, tt.extra); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestKeyTransAlgorithmDER(t *testing.T) {
	tests := []struct {
		name string
		h    crypto.Hash
		want string
	}{
		{"ok rsaEncryption", 0, "300d06092a864886f70d0101010500"},
		// SHA-1 and MGF1-SHA-1 are DEFAULT: DER omits them, leaving an empty SEQUENCE.
		{"ok oaep sha1", crypto.SHA1, "300d06092a864886f70d0101073000"},
		// [0] sha256Identifier and [1] mgf1SHA256Identifier, hash parameters NULL (RFC 4055 2.1).
		{"ok oaep sha256", crypto.SHA256, "303c06092a864886f70d010107" + "302f" +
			"a00f300d0609608648016503040201" + "0500" +
			"a11c301a06092a864886f70d010108" + "300d0609608648016503040201" + "0500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := keyTransAlgorithm(tt.h)
			if err != nil {
				t.Fatal(err)
			}
			var b cryptobyte.Builder
			addAlgorithm(&b, a)
			if got := hex.EncodeToString(b.BytesOrPanic()); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if h, err := keyTransHash(a); err != nil || h != tt.h {
				t.Fatalf("parse back: %v %v", h, err)
			}
		})
	}
	t.Run("fail md5", func(t *testing.T) {
		if _, err := keyTransAlgorithm(crypto.MD5); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestKeyTransRecipientErrors(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	noSKI := selfSigned(t)
	tests := []struct {
		name string
		cert *x509.Certificate
		opts KeyTransOptions
		want error
	}{
		{"fail ec certificate", env.Cert(t, "frank"), KeyTransOptions{}, ErrUnsupported},
		{"fail ski id without ski extension", noSKI, KeyTransOptions{ID: SubjectKeyID}, ErrNoSubjectKeyID},
		{"fail unknown oaep hash", env.Cert(t, "bob"), KeyTransOptions{OAEPHash: crypto.MD5}, ErrUnsupported},
		{"fail unknown id kind", env.Cert(t, "bob"), KeyTransOptions{ID: 7}, ErrUnsupported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := KeyTransRecipient(ctx, newSoftKey(t), tt.cert, tt.opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("fail no recipients", func(t *testing.T) {
		ec, _ := build(t, env, AES256CBC, KeyTransOptions{}, []byte("x"), "bob")
		if _, err := Envelope(ec, nil); err == nil {
			t.Fatal("envelope without recipients")
		}
	})
	t.Run("ok issuer and serial without ski", func(t *testing.T) {
		if _, err := KeyTransRecipient(ctx, newSoftKey(t), noSKI, KeyTransOptions{}); err != nil {
			t.Fatal(err)
		}
	})
}

// selfSigned is an RSA certificate without the subjectKeyIdentifier extension.
func selfSigned(t testing.TB) *x509.Certificate {
	t.Helper()
	env := softhsmtest.Setup(t)
	key := env.Key(t, "bob")
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "no ski"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SubjectKeyId) != 0 {
		t.Fatal("certificate has an ski")
	}
	return c
}
