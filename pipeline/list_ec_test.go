package pipeline_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/hsm"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/lists"
	"appliance/smime"
	"appliance/split"
)

// ecListKey is a P-256 list key pair on the shared token, made as `appliance keys generate
// -kind p256` makes it, and its certificate issued by the test PKI's intermediate with the key
// usages of the PKI's EC certificates (digitalSignature, keyAgreement) and the list's address.
type ecListKey struct {
	uri      string
	chain    []*x509.Certificate
	certFile string // PEM of the leaf
}

func newECListKey(tb testing.TB, env *softhsmtest.Env, usage x509.KeyUsage) ecListKey {
	tb.Helper()
	label := fmt.Sprintf("listec-%d", time.Now().UnixNano())
	signer, err := sharedToken.GenerateKeyPair(context.Background(), label, hsm.P256)
	if err != nil {
		tb.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		tb.Fatal(err)
	}
	ski := sha1.Sum(pub)
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{Organization: []string{"Appliance Test"}, CommonName: "listec"},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{listAddr},
		SubjectKeyId:   ski[:],
	}
	inter := env.Cert(tb, "inter")
	der, err := x509.CreateCertificate(rand.Reader, tmpl, inter, signer.Public(), env.Key(tb, "inter"))
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "listec.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		tb.Fatal(err)
	}
	return ecListKey{uri: "pkcs11:token=appliance;object=" + label, chain: []*x509.Certificate{cert, inter}, certFile: path}
}

// listUsage is what the test PKI gives EC certificates.
const listUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement

// sha256KDF is how the tests encrypt a post to a P-256 list: openssl with the X9.63 KDF over
// SHA-256 (its default is SHA-1).
var sha256KDF = interop.EncryptOptions{Cipher: "aes256", KeyOpts: []string{"ecdh_kdf_md:sha256"}}

// TestListECPost: a post openssl encrypts to a P-256 list certificate (its default SHA-1 KDF and
// others, AES-CBC and AES-GCM) goes to RSA and EC members alike; each decrypts theirs with
// openssl; the list's ECDSA signature carries mlExpansionHistory and verifies with openssl;
// the encrypted content is the submitted one.
func TestListECPost(t *testing.T) {
	members := []string{"bob@example.test", "carol@example.test", "frank@example.test"}
	for _, tc := range []struct {
		name string
		opt  interop.EncryptOptions
	}{
		{"ok default sha1 kdf cbc", interop.EncryptOptions{Cipher: "aes256"}},
		{"ok sha256 kdf gcm", interop.EncryptOptions{Cipher: "aes-256-gcm", KeyOpts: []string{"ecdh_kdf_md:sha256"}}},
		{"ok sha512 kdf aes128 keyid", interop.EncryptOptions{Cipher: "aes128", KeyID: true, KeyOpts: []string{"ecdh_kdf_md:sha512"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := listSetupFor(t)
			key := newECListKey(t, first.env, listUsage)
			ls := newListPipeline(t, split.Policy{}, nil, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Anyone: true}}, members)
			der := interop.OpenSSLEncryptFiles(t, []string{key.certFile}, []byte(listContent), tc.opt)
			submitted, err := cms.ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ls.pipe.Process(context.Background(), "E1", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(der, "olivia@example.org")))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != len(members) || len(s.Refused) != 0 {
				t.Fatalf("got %d packages and %d refusals (%v), want %d and 0", len(s.Packages), len(s.Refused), s.Refused, len(members))
			}
			for _, pk := range s.Packages {
				rcpt := pk.RcptTo[0]
				name := strings.TrimSuffix(rcpt, "@example.test")
				data := render(t, pk)
				checkListHeader(t, data, rcpt, members)
				signed, err := smime.ParseSigned(data)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := interop.OpenSSLVerify(t, ls.env.PKI, data); err != nil {
					t.Fatalf("list signature for %s: %v", rcpt, err)
				}
				checkListSignature(t, signed.Signature, key.chain[0], 1)
				checkECDSA(t, signed.Signature)
				pkg, err := smime.Parse(bytes.NewReader(signed.Content), 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				envd, err := cms.ParseEnveloped(pkg.DER)
				if err != nil {
					t.Fatal(err)
				}
				if len(envd.RecipientInfos) != 1 || !envd.RecipientInfos[0].Matches(ls.env.Cert(t, name)) {
					t.Fatalf("package for %s does not carry exactly the member's RecipientInfo", rcpt)
				}
				if !bytes.Equal(envd.EncryptedContentInfo, submitted.EncryptedContentInfo) || !bytes.Equal(envd.MAC, submitted.MAC) {
					t.Fatalf("package for %s: encrypted content differs from the submitted one", rcpt)
				}
				plain, err := interop.OpenSSLDecrypt(t, ls.env.PKI, name, signed.Content)
				if err != nil || !bytes.Equal(plain, []byte(listContent)) {
					t.Fatalf("%s decrypts %q, %v", rcpt, plain, err)
				}
			}
		})
	}
}

// checkECDSA: the list signed with ECDSA with SHA-256.
func checkECDSA(t *testing.T, sig []byte) {
	t.Helper()
	sd, err := cms.ParseSigned(sig)
	if err != nil {
		t.Fatal(err)
	}
	if a := sd.Signers[0].SignatureAlgorithm.Algorithm; !a.Equal(oid.ECDSAWithSHA256) {
		t.Fatalf("list signature algorithm %v, want ecdsa-with-SHA256", a)
	}
}

// TestListECPlainPost: a plain post to a P-256 list is signed inside and outside with the list's
// ECDSA key; the members read it and openssl verifies both signatures.
func TestListECPlainPost(t *testing.T) {
	first := listSetupFor(t)
	key := newECListKey(t, first.env, listUsage)
	members := []string{"bob@example.test", "frank@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Members: true}}, members)
	post := "From: bob@example.test\r\nTo: " + listAddr + "\r\nSubject: plain\r\n\r\nplain body\r\n"
	s, err := ls.pipe.Process(context.Background(), "E2", postEnv("bob@example.test"), strings.NewReader(post))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Packages) != 2 {
		t.Fatalf("got %d packages (%v), want 2", len(s.Packages), s.Refused)
	}
	for _, pk := range s.Packages {
		rcpt := pk.RcptTo[0]
		data := render(t, pk)
		if _, err := interop.OpenSSLVerify(t, ls.env.PKI, data); err != nil {
			t.Fatalf("outer signature for %s: %v", rcpt, err)
		}
		signed, err := smime.ParseSigned(data)
		if err != nil {
			t.Fatal(err)
		}
		checkECDSA(t, signed.Signature)
		plain, err := interop.OpenSSLDecrypt(t, ls.env.PKI, strings.TrimSuffix(rcpt, "@example.test"), signed.Content)
		if err != nil {
			t.Fatalf("%s cannot decrypt: %v", rcpt, err)
		}
		inner, err := interop.OpenSSLVerify(t, ls.env.PKI, plain)
		if err != nil || !bytes.Contains(inner, []byte("plain body")) {
			t.Fatalf("inner signature for %s: %q, %v", rcpt, inner, err)
		}
	}
}

// TestListECVerifiers: what gpgsm and NSS cmsutil make of a member's package signed with the
// P-256 list key (openssl verifies it in TestListECPost).
func TestListECVerifiers(t *testing.T) {
	first := listSetupFor(t)
	key := newECListKey(t, first.env, listUsage)
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	der := interop.OpenSSLEncryptFiles(t, []string{key.certFile}, []byte(listContent), sha256KDF)
	s, err := ls.pipe.Process(context.Background(), "E3", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(der, "olivia@example.org")))
	if err != nil || len(s.Packages) != 1 {
		t.Fatalf("Process = %v, %v", s, err)
	}
	data := render(t, s.Packages[0])
	signed, err := smime.ParseSigned(data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := interop.GpgsmVerify(t, ls.env.PKI, data); err != nil {
		t.Errorf("gpgsm: %v", err)
	}
	content, err := interop.CmsutilVerify(t, ls.env.PKI, data)
	if err != nil {
		t.Errorf("cmsutil: %v", err)
	} else if !bytes.Equal(smime.Canonicalize(content), smime.Canonicalize(signed.Content)) {
		t.Error("cmsutil verified other content than the signed part")
	}
}

// TestListECRefusals: a post to a P-256 list that is not encrypted to it, or whose wrapped key
// was changed, is refused (5.7.5) and leaves the list working.
func TestListECRefusals(t *testing.T) {
	first := listSetupFor(t)
	key := newECListKey(t, first.env, listUsage)
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	good := interop.OpenSSLEncryptFiles(t, []string{key.certFile}, []byte(listContent), sha256KDF)
	e, err := cms.ParseEnveloped(good)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := e.RecipientInfos[0].KeyAgreement(key.chain[0])
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(good)
	i := bytes.Index(tampered, ka.EncryptedKey)
	tampered[i+len(ka.EncryptedKey)-1] ^= 1
	toFrank := interop.OpenSSLEncryptFiles(t, []string{ls.env.File("frank.pem")}, []byte(listContent), interop.EncryptOptions{Cipher: "aes256"})
	for _, tc := range []struct {
		name string
		der  []byte
		want error
	}{
		{"fail tampered wrapped key", tampered, lists.ErrWrappedKey},
		{"fail encrypted to someone else", toFrank, lists.ErrNotForList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ls.pipe.Process(context.Background(), "E4", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(tc.der, "olivia@example.org")))
			if err != nil {
				t.Fatalf("Process = %v, want a refusal", err)
			}
			if len(s.Packages) != 0 || len(s.Refused) != 1 || s.Refused[0].Status != "5.7.5" || s.Refused[0].Reason != tc.want.Error() {
				t.Fatalf("got %d packages, refusals %+v; want one 5.7.5 %q", len(s.Packages), s.Refused, tc.want)
			}
		})
	}
	s, err := ls.pipe.Process(context.Background(), "E5", postEnv("olivia@example.org"), bytes.NewReader(encryptedPost(good, "olivia@example.org")))
	if err != nil || len(s.Packages) != 1 {
		t.Fatalf("the untampered post after the refusals: %v, %v", s, err)
	}
}

// rsaOnlyTok is a ListToken that cannot agree keys.
type rsaOnlyTok struct{ t listTok }

func (r rsaOnlyTok) UnwrapCEK(ctx context.Context, uri string, w []byte, h crypto.Hash) (cms.ContentKey, error) {
	return r.t.UnwrapCEK(ctx, uri, w, h)
}

// TestSetECLists: which EC list certificates SetLists takes.
func TestSetECLists(t *testing.T) {
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	file := filepath.Join(t.TempDir(), "members")
	writeMembers(t, file, []string{"bob@example.test"})
	key := newECListKey(t, ls.env, listUsage)
	signOnly := newECListKey(t, ls.env, x509.KeyUsageDigitalSignature)
	list := func(chain []*x509.Certificate) []lists.List {
		return []lists.List{{Address: listAddr, KeyURI: key.uri, Chain: chain, MembersFile: file}}
	}
	for _, tc := range []struct {
		name  string
		lists []lists.List
		tok   lists.ListToken
		want  error
	}{
		{"ok p256 key agreement and signature", list(key.chain), listTok{sharedToken}, nil},
		{"ok frank's p256 certificate", list([]*x509.Certificate{ls.env.Cert(t, "frank")}), listTok{sharedToken}, nil},
		{"fail p384", list([]*x509.Certificate{ls.env.Cert(t, "peggy")}), listTok{sharedToken}, lists.ErrListConfig},
		{"fail no keyAgreement usage", list(signOnly.chain), listTok{sharedToken}, lists.ErrListConfig},
		{"fail token without key agreement", list(key.chain), rsaOnlyTok{listTok{sharedToken}}, lists.ErrListConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ls.pipe.SetLists(tc.lists, tc.tok)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("SetLists = %v, want %v", err, tc.want)
			}
		})
	}
}
