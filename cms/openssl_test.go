package cms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

// openssl runs the openssl command and returns its standard output; failure includes stderr.
func openssl(t testing.TB, args ...string) ([]byte, error) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if ci.On() {
			t.Fatal("openssl not found (CI set: a failure, not a skip)")
		}
		t.Skip("openssl not found")
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("openssl", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("openssl %v: %v: %s", args, err, stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// opensslDecrypt decrypts der as user with openssl cms.
// opensslVerify has openssl verify the SignedData der against the test PKI's root and fails
// the test unless it returns content (given to it when detached, as the last argument). It
// returns the arguments it gave openssl.
func opensslVerify(t testing.TB, env *softhsmtest.Env, der, content []byte, detached bool) []string {
	t.Helper()
	args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", writeFile(t, "sig.der", der),
		"-CAfile", env.File("root.pem"), "-purpose", "smimesign"}
	if detached {
		args = append(args, "-content", writeFile(t, "content", content))
	}
	got, err := openssl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, content) {
		t.Fatalf("openssl returned %q", got)
	}
	return args
}

func opensslDecrypt(t testing.TB, env *softhsmtest.Env, der []byte, user string) ([]byte, error) {
	t.Helper()
	in := writeFile(t, "msg.der", der)
	return openssl(t, "cms", "-decrypt", "-inform", "DER", "-in", in,
		"-recip", env.File(user+".pem"), "-inkey", env.File(user+".key"))
}

func TestOpenSSLDecryptsOurs(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nfor openssl\r\n")
	for _, v := range variants {
		t.Run("ok "+v.name, func(t *testing.T) {
			t.Parallel()
			_, der := build(t, env, v.alg, v.opts, msg, "bob", "carol")
			for _, u := range []string{"bob", "carol"} {
				got, err := opensslDecrypt(t, env, der, u)
				if err != nil {
					t.Fatalf("%s: %v", u, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("%s: got %q", u, got)
				}
			}
			if _, err := opensslDecrypt(t, env, der, "dave"); err == nil {
				t.Fatal("dave decrypted a message not meant for him")
			}
		})
	}
	t.Run("fail flipped gcm ciphertext byte", func(t *testing.T) {
		t.Parallel()
		key := newSoftKey(t)
		ec, err := Encrypt(context.Background(), key, AES256GCM, bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		ri, err := KeyTransRecipient(context.Background(), key, env.Cert(t, "bob"), KeyTransOptions{OAEPHash: crypto.SHA1})
		if err != nil {
			t.Fatal(err)
		}
		ec.Ciphertext[len(ec.Ciphertext)/2] ^= 0x01
		enc, err := Envelope(ec, []*RecipientInfo{ri})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := opensslDecrypt(t, env, enc.Bytes(), "bob"); err == nil {
			t.Fatalf("openssl accepted tampered content: %q", out)
		}
	})
	t.Run("ok two packages of one content", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		for _, alg := range []ContentAlgorithm{AES256CBC, AES256GCM} {
			key := newSoftKey(t)
			ec, err := Encrypt(ctx, key, alg, bytes.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			pkg := map[string]*Encoded{}
			for _, set := range [][]string{{"bob", "carol"}, {"dave"}} {
				var ris []*RecipientInfo
				for _, u := range set {
					ri, err := KeyTransRecipient(ctx, key, env.Cert(t, u), KeyTransOptions{})
					if err != nil {
						t.Fatal(err)
					}
					ris = append(ris, ri)
				}
				enc, err := Envelope(ec, ris)
				if err != nil {
					t.Fatal(err)
				}
				for _, u := range set {
					pkg[u] = enc
				}
			}
			for _, u := range []string{"bob", "carol", "dave"} {
				for _, other := range []string{"bob", "dave"} {
					_, err := opensslDecrypt(t, env, pkg[other].Bytes(), u)
					mine := pkg[other] == pkg[u]
					if mine != (err == nil) {
						t.Fatalf("%v: %s reading %s's package: %v", alg, u, other, err)
					}
				}
			}
			a, _ := ParseEnveloped(pkg["bob"].Bytes())
			b, _ := ParseEnveloped(pkg["dave"].Bytes())
			ca, _ := a.EncryptedContent()
			cb, _ := b.EncryptedContent()
			if !bytes.Equal(ca, cb) || !bytes.Equal(ca, ec.Ciphertext) {
				t.Fatalf("%v: encryptedContent differs", alg)
			}
		}
	})
}

// opensslEncrypt makes a client-style message with openssl cms -encrypt.
func opensslEncrypt(t testing.TB, env *softhsmtest.Env, msg []byte, args, perRecip []string, users ...string) []byte {
	t.Helper()
	in := writeFile(t, "plain.txt", msg)
	out := filepath.Join(t.TempDir(), "enc.der")
	a := append([]string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-out", out}, args...)
	for _, u := range users {
		a = append(a, "-recip", env.File(u+".pem"))
		a = append(a, perRecip...) // -keyopt applies to the -recip before it
	}
	if _, err := openssl(t, a...); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var opensslVariants = []struct {
	name     string
	args     []string
	perRecip []string
	ski      bool
	auth     bool
	oaep     crypto.Hash
}{
	{"der aes256-cbc", []string{"-aes256"}, nil, false, false, 0},
	{"stream ber aes256-cbc", []string{"-aes256", "-stream"}, nil, false, false, 0},
	{"keyid", []string{"-aes256", "-keyid"}, nil, true, false, 0},
	{"aes-256-gcm", []string{"-aes-256-gcm"}, nil, false, true, 0},
	{"stream ber aes-256-gcm keyid", []string{"-aes-256-gcm", "-stream", "-keyid"}, nil, true, true, 0},
	{"oaep sha256", []string{"-aes256"}, []string{"-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"}, false, false, crypto.SHA256},
	{"stream ber gcm oaep sha1", []string{"-aes-256-gcm", "-stream"}, []string{"-keyopt", "rsa_padding_mode:oaep"}, false, true, crypto.SHA1},
}

// TestParseOpenSSL parses what openssl cms -encrypt makes and re-encodes subsets that openssl
// must still decrypt for the kept recipient only.
func TestParseOpenSSL(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nclient encrypted to To, Cc and Bcc\r\n")
	users := []string{"bob", "carol", "dave"}
	for _, v := range opensslVariants {
		t.Run("ok "+v.name, func(t *testing.T) {
			t.Parallel()
			der := opensslEncrypt(t, env, msg, v.args, v.perRecip, users...)
			if stream := slices.Contains(v.args, "-stream"); stream != (der[1] == 0x80) {
				t.Fatalf("-stream %v but length octet %#x", stream, der[1])
			}
			p, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			if p.Auth() != v.auth {
				t.Fatalf("auth %v", p.Auth())
			}
			if len(p.RecipientInfos) != len(users) {
				t.Fatalf("%d recipientinfos", len(p.RecipientInfos))
			}
			owner := map[*RecipientInfo]string{}
			for _, ri := range p.RecipientInfos {
				for _, u := range users {
					if ri.Matches(env.Cert(t, u)) {
						owner[ri] = u
					}
				}
				if (ri.SubjectKeyID != nil) != v.ski {
					t.Fatalf("ski id %x", ri.SubjectKeyID)
				}
				if h, err := ri.OAEPHash(); err != nil || h != v.oaep {
					t.Fatalf("oaep hash %v, %v; want %v", h, err, v.oaep)
				}
			}
			if len(owner) != len(users) {
				t.Fatalf("matched %d of %d recipientinfos", len(owner), len(users))
			}
			for ri, u := range owner {
				enc, err := p.WithRecipients([]*RecipientInfo{ri})
				if err != nil {
					t.Fatal(err)
				}
				sub := enc.Bytes()
				got, err := opensslDecrypt(t, env, sub, u)
				if err != nil {
					t.Fatalf("%s: %v", u, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("%s: got %q", u, got)
				}
				if got, err := softDecrypt(sub, env.Cert(t, u), env.Key(t, u)); err != nil || !bytes.Equal(got, msg) {
					t.Fatalf("%s: soft decrypt: %v", u, err)
				}
				for _, other := range users {
					if other != u {
						if _, err := opensslDecrypt(t, env, sub, other); err == nil {
							t.Fatalf("%s decrypted %s's package", other, u)
						}
					}
				}
				q, err := ParseEnveloped(sub)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(q.EncryptedContentInfo, p.EncryptedContentInfo) || !bytes.Equal(q.MAC, p.MAC) ||
					len(q.RecipientInfos) != 1 || !bytes.Equal(q.RecipientInfos[0].Raw, ri.Raw) {
					t.Fatal("re-encoding changed bytes it must reuse")
				}
			}
		})
	}
}

func TestOpenSSLOAEPParams(t *testing.T) {
	env := softhsmtest.Setup(t)
	in := writeFile(t, "plain.txt", []byte("x"))
	out := filepath.Join(t.TempDir(), "enc.der")
	for _, md := range []struct {
		name string
		h    crypto.Hash
	}{{"sha1", crypto.SHA1}, {"sha256", crypto.SHA256}, {"sha512", crypto.SHA512}} {
		t.Run("ok openssl oaep "+md.name, func(t *testing.T) {
			_, err := openssl(t, "cms", "-encrypt", "-binary", "-aes256", "-outform", "DER", "-in", in, "-out", out,
				"-recip", env.File("bob.pem"), "-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:"+md.name)
			if err != nil {
				t.Fatal(err)
			}
			der, _ := os.ReadFile(out)
			p, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			if h, err := p.RecipientInfos[0].OAEPHash(); err != nil || h != md.h {
				t.Fatalf("got %v, %v", h, err)
			}
			if got, err := softDecrypt(der, env.Cert(t, "bob"), env.Key(t, "bob")); err != nil || string(got) != "x" {
				t.Fatalf("soft decrypt: %q %v", got, err)
			}
		})
	}
}

func TestOpenSSLVerifiesOurs(t *testing.T) {
	env := softhsmtest.Setup(t)
	content := []byte("Content-Type: text/plain\r\n\r\nsigned\r\n")
	root, inter := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	tests := []struct {
		name   string
		signer string
		opts   SignOptions
	}{
		{"ok rsa pkcs1 encapsulated", "alice", SignOptions{EncryptionCert: env.Cert(t, "alice")}},
		{"ok rsa pkcs1 detached", "alice", SignOptions{Detached: true}},
		{"ok rsa pss sha256", "alice", SignOptions{PSS: true}},
		{"ok rsa pss sha512 detached", "alice", SignOptions{PSS: true, Hash: crypto.SHA512, Detached: true}},
		{"ok rsa pkcs1 sha384", "alice", SignOptions{Hash: crypto.SHA384}},
		{"ok ecdsa", "frank", SignOptions{}},
		{"ok ecdsa detached sha384", "frank", SignOptions{Detached: true, Hash: crypto.SHA384}},
		{"ok extra attribute", "alice", SignOptions{Extra: []Attribute{{Type: []int{1, 2, 3, 4}, Value: []byte{0x05, 0x00}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			chain := []*x509.Certificate{env.Cert(t, tt.signer), inter}
			der, err := Sign(env.Key(t, tt.signer), chain, content, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			args := opensslVerify(t, env, der, content, tt.opts.Detached)
			s, err := ParseSigned(der)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Certificates) != 2 || (s.Content == nil) != tt.opts.Detached {
				t.Fatalf("%d certificates, content %q", len(s.Certificates), s.Content)
			}
			signers, err := s.Verify(VerifyOptions{Roots: roots, Content: content})
			if err != nil {
				t.Fatal(err)
			}
			if !signers[0].Equal(chain[0]) {
				t.Fatal("wrong signer")
			}
			// A tampered body fails both verifiers.
			bad := append([]byte(nil), content...)
			bad[len(bad)-3] ^= 0x20
			if tt.opts.Detached {
				args[len(args)-1] = writeFile(t, "bad", bad)
				if _, err := openssl(t, args...); err == nil {
					t.Fatal("openssl verified a tampered body")
				}
				if _, err := s.Verify(VerifyOptions{Roots: roots, Content: bad}); err == nil {
					t.Fatal("Verify accepted a tampered body")
				}
			} else {
				s.Content = bad
				if _, err := s.Verify(VerifyOptions{Roots: roots}); err == nil {
					t.Fatal("Verify accepted a tampered body")
				}
			}
		})
	}
}

func TestSignAttributes(t *testing.T) {
	env := softhsmtest.Setup(t)
	alice := env.Cert(t, "alice")
	when := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	der, err := Sign(env.Key(t, "alice"), []*x509.Certificate{alice}, []byte("x"), SignOptions{SigningTime: when, EncryptionCert: alice})
	if err != nil {
		t.Fatal(err)
	}
	out, err := openssl(t, "cms", "-cmsout", "-print", "-inform", "DER", "-in", writeFile(t, "s.der", der))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"signingTime", "Nov 28 12:00:00 2026 GMT", "messageDigest", "contentType",
		"S/MIME Capabilities", "aes-256-gcm", "aes-256-cbc", "aes-128-cbc", "rsaesOaep",
		"id-smime-aa-encrypKeyPref", "version: 1"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("openssl -print lacks %q:\n%s", want, out)
		}
	}
	tests := []struct {
		name   string
		signer crypto.Signer
		chain  []*x509.Certificate
		opts   SignOptions
	}{
		{"fail no chain", env.Key(t, "alice"), nil, SignOptions{}},
		{"fail key does not match", env.Key(t, "bob"), []*x509.Certificate{alice}, SignOptions{}},
		{"fail pss with ecdsa", env.Key(t, "frank"), []*x509.Certificate{env.Cert(t, "frank")}, SignOptions{PSS: true}},
		{"fail sha1", env.Key(t, "alice"), []*x509.Certificate{alice}, SignOptions{Hash: crypto.SHA1}},
		{"fail duplicate attribute", env.Key(t, "alice"), []*x509.Certificate{alice},
			SignOptions{Extra: []Attribute{{Type: []int{1, 2, 840, 113549, 1, 9, 5}, Value: []byte{5, 0}}}}},
		{"fail attribute value not der", env.Key(t, "alice"), []*x509.Certificate{alice},
			SignOptions{Extra: []Attribute{{Type: []int{1, 2, 3}, Value: []byte{5, 9}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Sign(tt.signer, tt.chain, []byte("x"), tt.opts); err == nil {
				t.Fatal("signed")
			}
		})
	}
}

// TestSignDigest: a digest the caller made gives the very signature that signing the content
// gives (PKCS#1 v1.5 is deterministic), and is refused where it cannot stand for the content.
func TestSignDigest(t *testing.T) {
	env := softhsmtest.Setup(t)
	alice := env.Cert(t, "alice")
	key := env.Key(t, "alice")
	content := []byte("Content-Type: text/plain\r\n\r\nstreamed\r\n")
	sum := sha256.Sum256(content)
	when := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	want, err := Sign(key, []*x509.Certificate{alice}, content, SignOptions{Detached: true, SigningTime: when})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content []byte
		opts    SignOptions
		ok      bool
	}{
		{"ok digest for detached content", nil, SignOptions{Detached: true, Digest: sum[:]}, true},
		{"fail digest of the wrong size", nil, SignOptions{Detached: true, Digest: sum[:20]}, false},
		{"fail digest and content", content, SignOptions{Detached: true, Digest: sum[:]}, false},
		{"fail digest encapsulated", nil, SignOptions{Digest: sum[:]}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.SigningTime = when
			got, err := Sign(key, []*x509.Certificate{alice}, tt.content, tt.opts)
			if !tt.ok {
				if err == nil {
					t.Fatal("signed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("signature over the digest differs from the one over the content")
			}
		})
	}
}

// TestVerifyOpenSSL reads and verifies what openssl cms -sign makes (DER and -stream BER,
// detached, PSS and ECDSA), as inspect does for client-signed mail.
func TestVerifyOpenSSL(t *testing.T) {
	env := softhsmtest.Setup(t)
	content := []byte("Content-Type: text/plain\r\n\r\nsigned by openssl\r\n")
	root, _ := env.Roots(t)
	roots := x509.NewCertPool()
	roots.AddCert(root)
	in := writeFile(t, "content", content)
	tests := []struct {
		name     string
		signer   string
		args     []string
		detached bool
	}{
		{"ok rsa der", "alice", []string{"-nodetach"}, false},
		{"ok rsa stream ber", "alice", []string{"-nodetach", "-stream"}, false},
		{"ok rsa detached", "alice", nil, true},
		{"ok rsa pss", "alice", []string{"-nodetach", "-keyopt", "rsa_padding_mode:pss"}, false},
		{"ok ecdsa sha512", "frank", []string{"-nodetach", "-md", "sha512"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "s.der")
			args := append([]string{"cms", "-sign", "-binary", "-outform", "DER", "-in", in, "-out", out,
				"-signer", env.File(tt.signer + ".pem"), "-inkey", env.File(tt.signer + ".key"),
				"-certfile", env.File("inter.pem")}, tt.args...)
			if _, err := openssl(t, args...); err != nil {
				t.Fatal(err)
			}
			der, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			s, err := ParseSigned(der)
			if err != nil {
				t.Fatal(err)
			}
			if (s.Content == nil) != tt.detached {
				t.Fatalf("content %q", s.Content)
			}
			signers, err := s.Verify(VerifyOptions{Roots: roots, Content: content})
			if err != nil {
				t.Fatal(err)
			}
			if !signers[0].Equal(env.Cert(t, tt.signer)) {
				t.Fatal("wrong signer")
			}
			if _, err := s.Verify(VerifyOptions{Roots: x509.NewCertPool(), Content: content}); !errors.Is(err, ErrVerify) {
				t.Fatalf("untrusted root: %v", err)
			}
			if tt.detached {
				if _, err := s.Verify(VerifyOptions{Roots: roots, Content: append(bytes.Clone(content), ' ')}); !errors.Is(err, ErrVerify) {
					t.Fatalf("tampered: %v", err)
				}
			}
		})
	}
}

// TestMailListRewrap is the mail list agent's path (README, Secure mailing lists) with a software key: the
// list's RecipientInfo is unwrapped, the same key wrapped for a member, and the envelope
// re-encoded with only the member's RecipientInfo; openssl must decrypt it as the member.
func TestMailListRewrap(t *testing.T) {
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nto the list\r\n")
	for _, v := range []struct {
		name     string
		args     []string
		perRecip []string
		member   KeyTransOptions
	}{
		{"ok cbc pkcs1 to member by issuer", []string{"-aes256"}, nil, KeyTransOptions{}},
		{"ok gcm oaep to member by ski", []string{"-aes-256-gcm", "-stream"}, []string{"-keyopt", "rsa_padding_mode:oaep"},
			KeyTransOptions{ID: SubjectKeyID, OAEPHash: crypto.SHA256}},
	} {
		t.Run(v.name, func(t *testing.T) {
			der := opensslEncrypt(t, env, msg, v.args, v.perRecip, "list")
			p, err := ParseEnveloped(der)
			if err != nil {
				t.Fatal(err)
			}
			ri := p.RecipientInfos[0]
			if !ri.Matches(env.Cert(t, "list")) {
				t.Fatal("list recipientinfo not found")
			}
			h, err := ri.OAEPHash()
			if err != nil {
				t.Fatal(err)
			}
			listKey := env.Key(t, "list").(*rsa.PrivateKey)
			var cek []byte
			if h == 0 {
				cek, err = rsa.DecryptPKCS1v15(nil, listKey, ri.EncryptedKey)
			} else {
				cek, err = rsa.DecryptOAEP(h.New(), nil, listKey, ri.EncryptedKey, nil)
			}
			if err != nil || len(cek) != 32 {
				t.Fatalf("unwrap: %d bytes, %v", len(cek), err)
			}
			key := &softKey{}
			copy(key.key[:], cek)
			member, err := KeyTransRecipient(context.Background(), key, env.Cert(t, "bob"), v.member)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := p.WithRecipients([]*RecipientInfo{member})
			if err != nil {
				t.Fatal(err)
			}
			got, err := opensslDecrypt(t, env, enc.Bytes(), "bob")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %q", got)
			}
			if _, err := opensslDecrypt(t, env, enc.Bytes(), "list"); err == nil {
				t.Fatal("the list's own recipientinfo survived")
			}
		})
	}
}
