package seal_test

// Tests that kill mutants scripts/mutation.sh found living or not covered in seal
// (docs/testing.md, "Mutation testing").

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/internal/interop"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// TestSealSharesEncoding: the packages Seal makes for one profile share one base64 encoding of
// the encrypted content, made once.
func TestSealSharesEncoding(t *testing.T) {
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "one encoding\r\n")
	plan, certs := r.plan(t, msg, []string{"bob@example.test", "dave@example.test"}, "compat", split.Individual)
	sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
	if err != nil {
		t.Fatal(err)
	}
	if len(sealed.Packages) != 2 {
		t.Fatalf("%d packages, want 2", len(sealed.Packages))
	}
	a, b := seal.SharedEncoding(sealed.Packages[0]), seal.SharedEncoding(sealed.Packages[1])
	if a == nil || a != b {
		t.Fatalf("packages of one profile do not share one encoding: %p %p", a, b)
	}
}

// TestSignedEntityParts: the reader a signed entity is encrypted from announces its true
// length (cms sizes the ciphertext buffer by it) and streams what its copy holds, whichever
// piece is the largest (the signature in the tail outweighs a short message).
func TestSignedEntityParts(t *testing.T) {
	long := bytes.Repeat([]byte("much longer than the other pieces\r\n"), 100)
	for _, pieces := range [][3][]byte{
		{[]byte("head\r\n"), long, []byte("\r\ntail")},
		{[]byte("head\r\n"), []byte("entity"), long},
		{long, []byte("entity"), []byte("\r\ntail")},
	} {
		head, entity, tail := pieces[0], pieces[1], pieces[2]
		n, streamed, copied, err := seal.SignedEntityParts(head, entity, tail)
		if err != nil {
			t.Fatal(err)
		}
		want := append(append(append([]byte{}, head...), entity...), tail...)
		if n != len(want) || !bytes.Equal(streamed, want) || !bytes.Equal(copied, want) {
			t.Fatalf("length %d of %d, streamed %d bytes, copied %d bytes", n, len(want), len(streamed), len(copied))
		}
	}
}

// TestSealLargeEntity: a message whose entity is much larger than the signature seals and
// decrypts to its body (the ciphertext buffer is sized from the three pieces' total).
func TestSealLargeEntity(t *testing.T) {
	r := setup(t)
	body := strings.Repeat("Eine lange Zeile im Rechenzentrum.\r\n", 2000)
	msg := message([]string{"bob@example.test"}, body)
	plan, certs := r.plan(t, msg, []string{"bob@example.test"}, "modern", split.Individual)
	sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := interop.OpenSSLDecrypt(t, r.env.PKI, "bob", render(t, sealed.Packages[0]))
	if err != nil {
		t.Fatal(err)
	}
	content, err := interop.OpenSSLVerify(t, r.env.PKI, inner)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(smime.Canonicalize(content), []byte(body)) {
		t.Fatal("the body did not survive")
	}
}

// TestShareContentWho: packages re-encoded from one client CMS get one shared base64, a package
// of another CMS does not get it, one that has its own keeps it, a signed-only package is left
// alone, and the first package with a CMS decides which CMS is shared.
func TestShareContentWho(t *testing.T) {
	der, err := os.ReadFile(filepath.Join("..", "cms", "testdata", "enveloped-openssl-stream-ber-aes256-cbc.der"))
	if err != nil {
		t.Fatal(err)
	}
	parse := func() *cms.Enveloped { // each its own copy: parses of one slice share its memory
		env, err := cms.ParseEnveloped(bytes.Clone(der))
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	var h textproto.Header
	h.Set("From", "alice@example.test")
	pass := func(env *cms.Enveloped) *seal.Package {
		enc, err := env.WithRecipients(env.RecipientInfos[:1])
		if err != nil {
			t.Fatal(err)
		}
		p, err := seal.NewPassThrough(split.Package{Recipients: []string{"bob@example.test"}}, h, smime.TypeEnvelopedData, enc)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	signedOnly := signedOnlyPackage(t)
	one, other := parse(), parse()
	a, b, c, own := pass(one), pass(one), pass(other), pass(other)
	ownB64 := seal.SetSharedEncoding(own)

	seal.ShareContent([]*seal.Package{signedOnly, a, own, b, c})
	if seal.SharedEncoding(a) == nil || seal.SharedEncoding(a) != seal.SharedEncoding(b) {
		t.Fatalf("packages of one CMS do not share one encoding: %p %p", seal.SharedEncoding(a), seal.SharedEncoding(b))
	}
	if seal.SharedEncoding(c) != nil {
		t.Fatal("a package of another CMS was given the first CMS's encoding")
	}
	if seal.SharedEncoding(own) != ownB64 {
		t.Fatal("a package's own shared encoding was replaced")
	}
	if seal.SharedEncoding(signedOnly) != nil {
		t.Fatal("a signed-only package was given an encoding")
	}

	a2, c2 := pass(one), pass(other)
	seal.ShareContent([]*seal.Package{c2, a2})
	if seal.SharedEncoding(c2) == nil || seal.SharedEncoding(a2) != nil {
		t.Fatalf("the first package's CMS is not the one shared: first %p, second %p", seal.SharedEncoding(c2), seal.SharedEncoding(a2))
	}
}

// TestSameMemory: the same backing arrays are the same memory, equal bytes elsewhere are not,
// and empty parts compare by length alone.
func TestSameMemory(t *testing.T) {
	x, y := []byte("abc"), []byte("abc")
	tests := []struct {
		name string
		a, b [][]byte
		want bool
	}{
		{"ok same slices", [][]byte{x, y}, [][]byte{x, y}, true},
		{"ok empty parts", [][]byte{{}, x}, [][]byte{{}, x}, true},
		{"ok no parts", nil, [][]byte{}, true},
		{"fail equal bytes elsewhere", [][]byte{x}, [][]byte{y}, false},
		{"fail fewer parts", [][]byte{x, y}, [][]byte{x}, false},
		{"fail shorter part at the same address", [][]byte{x}, [][]byte{x[:2]}, false},
		{"fail empty against non-empty", [][]byte{{}}, [][]byte{x}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := seal.SameMemory(tt.a, tt.b); got != tt.want {
				t.Fatalf("sameMemory = %v, want %v", got, tt.want)
			}
		})
	}
}

// signedOnlyPackage seals a plan whose one package has no profile: signed, not encrypted.
func signedOnlyPackage(t *testing.T) *seal.Package {
	t.Helper()
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "signed only\r\n")
	plan := &split.Plan{Packages: []split.Package{{Recipients: []string{"bob@example.test"}}}}
	sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, nil)
	if err != nil {
		t.Fatal(err)
	}
	return sealed.Packages[0]
}

// TestKind: what each way of making a package reports as its mode and profile.
func TestKind(t *testing.T) {
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "kind\r\n")
	rcpts := []string{"bob@example.test"}
	var pkgs []*seal.Package
	var want [][2]string
	for _, profile := range []string{seal.ProfileCompat, seal.ProfileModern} {
		plan, certs := r.plan(t, msg, rcpts, profile, split.Individual)
		sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
		if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, sealed.Packages[0])
		want = append(want, [2]string{seal.ModeEncrypted, profile})
	}
	pkgs = append(pkgs, signedOnlyPackage(t))
	want = append(want, [2]string{seal.ModeSigned, seal.ProfileNone})

	der, err := os.ReadFile(filepath.Join("..", "cms", "testdata", "enveloped-openssl-aes-256-gcm.der"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := cms.ParseEnveloped(der)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := env.WithRecipients(env.RecipientInfos[:1])
	if err != nil {
		t.Fatal(err)
	}
	var h textproto.Header
	h.Set("From", "alice@example.test")
	pk := split.Package{Recipients: rcpts}
	pt, err := seal.NewPassThrough(pk, h, smime.TypeAuthEnvelopedData, enc)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := r.sealer().NewResigned(pk, h, smime.TypeEnvelopedData, enc, r.sender)
	if err != nil {
		t.Fatal(err)
	}
	pkgs = append(pkgs, pt, rs)
	want = append(want, [2]string{seal.ModePassThrough, seal.ProfileModern}, [2]string{seal.ModePassThrough, seal.ProfileCompat})
	for i, p := range pkgs {
		if mode, profile := p.Kind(); mode != want[i][0] || profile != want[i][1] {
			t.Errorf("package %d: %s %s, want %s %s", i, mode, profile, want[i][0], want[i][1])
		}
	}

	// What each writes: an encrypted or pass-through package its CMS, a signed-only one the
	// message signed, a re-signed one the envelope signed on the HSM.
	for i, p := range pkgs[:4] {
		if i == 2 {
			continue
		}
		got, err := smime.Parse(bytes.NewReader(render(t, p)), 1<<20)
		if err != nil {
			t.Fatalf("package %d: %v", i, err)
		}
		if p.CMS() == nil || !bytes.Equal(got.DER, p.CMS().Bytes()) {
			t.Fatalf("package %d does not carry its CMS", i)
		}
	}
	signed, err := interop.OpenSSLVerify(t, r.env.PKI, render(t, pkgs[2]))
	if err != nil || !bytes.Contains(signed, []byte("signed only")) {
		t.Fatalf("signed-only package: %v\n%s", err, signed)
	}
	resigned, err := interop.OpenSSLVerify(t, r.env.PKI, render(t, rs))
	if err != nil {
		t.Fatalf("re-signed package: %v", err)
	}
	rp, err := smime.Parse(bytes.NewReader(resigned), 1<<20)
	if err != nil || !bytes.Equal(rp.DER, enc.Bytes()) || rp.SMIMEType != smime.TypeEnvelopedData {
		t.Fatalf("re-signed package does not carry the envelope: %v", err)
	}
}

// TestListContent: a list post signed as the list and encrypted once, wrapped for a member,
// decrypts as the member to the post with the list's signature; the profile decides the
// smime-type and key transport.
func TestListContent(t *testing.T) {
	r := setup(t)
	ctx := context.Background()
	post := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nan die Liste\r\n")
	for _, profile := range []string{seal.ProfileCompat, seal.ProfileModern} {
		t.Run("ok "+profile, func(t *testing.T) {
			s := r.sealer()
			lc, err := s.ListContent(ctx, post, profile, r.sender, time.Date(2026, 11, 28, 15, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := lc.Key.(interface{ Destroy(context.Context) error }); ok {
				defer d.Destroy(ctx)
			}
			wantType, wantOAEP := smime.TypeEnvelopedData, false
			if profile == seal.ProfileModern {
				wantType, wantOAEP = smime.TypeAuthEnvelopedData, true
			}
			if lc.SMIMEType != wantType || (lc.OAEP != 0) != wantOAEP {
				t.Fatalf("smime-type %s, oaep %v; want %s, oaep %v", lc.SMIMEType, lc.OAEP, wantType, wantOAEP)
			}
			if wantOAEP && lc.OAEP != r.tok.OAEPHash() {
				t.Fatalf("oaep %v, want the token's %v", lc.OAEP, r.tok.OAEPHash())
			}
			ris, err := s.WrapMember(ctx, lc.Key, r.users["bob"], []*x509.Certificate{r.env.Cert(t, "bob")}, lc.OAEP)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := cms.Envelope(lc.Content, ris)
			if err != nil {
				t.Fatal(err)
			}
			var h textproto.Header
			h.Set("From", "list@example.test")
			p, err := seal.NewPassThrough(split.Package{Recipients: []string{r.users["bob"]}}, h, lc.SMIMEType, enc)
			if err != nil {
				t.Fatal(err)
			}
			pkg := render(t, p)
			inner, err := interop.OpenSSLDecrypt(t, r.env.PKI, "bob", pkg)
			if err != nil {
				t.Fatal(err)
			}
			content, err := interop.OpenSSLVerify(t, r.env.PKI, inner)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(content, []byte("an die Liste")) {
				t.Fatalf("post not in the verified content:\n%s", content)
			}
			mustNotDecrypt(t, r, "dave", pkg)
		})
	}
	t.Run("fail unknown profile", func(t *testing.T) {
		if _, err := r.sealer().ListContent(ctx, post, "nosuch", r.sender, time.Now()); !errors.Is(err, seal.ErrUnknownProfile) {
			t.Fatalf("got %v, want ErrUnknownProfile", err)
		}
	})
	for name, list := range map[string]seal.Sender{"no key": {Chain: r.sender.Chain}, "no certificate": {Signer: r.sender.Signer}} {
		t.Run("fail "+name, func(t *testing.T) {
			if _, err := r.sealer().ListContent(ctx, post, seal.ProfileCompat, list, time.Now()); err == nil {
				t.Fatal("signed as a list without key or certificate")
			}
		})
	}
}

// TestSealAsksOAEPHash: the modern profile wraps with the hash the sealer's OAEPHash answers for
// this message, PKCS#1 v1.5 when it answers none (a token without RSAES-OAEP), not a default.
func TestSealAsksOAEPHash(t *testing.T) {
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "which hash\r\n")
	plan, certs := r.plan(t, msg, []string{"bob@example.test"}, "modern", split.Individual)
	for _, want := range []crypto.Hash{0, r.tok.OAEPHash()} {
		s := r.sealer()
		asked := 0
		s.OAEPHash = func() crypto.Hash { asked++; return want }
		sealed, err := s.Seal(context.Background(), msg, plan, r.sender, certs)
		if err != nil {
			t.Fatal(err)
		}
		if asked == 0 {
			t.Fatal("OAEPHash not asked")
		}
		env, err := cms.ParseEnveloped(sealed.Packages[0].CMS().Bytes())
		if err != nil {
			t.Fatal(err)
		}
		for i, ri := range env.RecipientInfos {
			if got, err := ri.OAEPHash(); err != nil || got != want {
				t.Fatalf("RecipientInfo %d wrapped with %v (%v), want %v", i, got, err, want)
			}
		}
		mustDecrypt(t, r, "bob", render(t, sealed.Packages[0]))
	}
}

// TestSealWrapError: a certificate the content key cannot be wrapped for (an Ed25519 key) fails
// the seal with an error naming its owner and certificate.
func TestSealWrapError(t *testing.T) {
	r := setup(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(0x2323), Subject: pkix.Name{CommonName: "Ed Wards"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), EmailAddresses: []string{"ed@example.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	ed, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	msg := message([]string{"bob@example.test"}, "x\r\n")
	plan, certs := r.plan(t, msg, []string{"bob@example.test"}, "compat", split.Individual)
	certs["ed"] = ed
	pk := &plan.Packages[0]
	pk.Certs = append(pk.Certs, split.Cert{ID: "ed", Owner: "ed@example.test"})
	_, err = r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
	if err == nil {
		t.Fatal("sealed for an Ed25519 certificate")
	}
	for _, want := range []string{`failed to wrap content key for "ed@example.test"`, "Ed Wards", "0x2323"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
}
