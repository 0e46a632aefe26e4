package hsm_test

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
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"appliance/cms"
	"appliance/hsm"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
)

// ecListKey makes a P-256 key pair on the token (as `appliance keys generate -kind p256` does)
// and a certificate for it issued by the test PKI's intermediate with the usages a list's EC
// certificate has (digitalSignature, keyAgreement); it returns the key's URI, the certificate
// and the certificate's PEM file.
func ecListKey(t *testing.T, tok *hsm.Token, env *softhsmtest.Env) (string, *x509.Certificate, string) {
	t.Helper()
	label := unique("listec")
	signer, err := tok.GenerateKeyPair(context.Background(), label, hsm.P256)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{Organization: []string{"Appliance Test"}, CommonName: label},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{"list@example.test"},
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	ski := sha1.Sum(pub)
	tmpl.SubjectKeyId = ski[:]
	der, err := x509.CreateCertificate(rand.Reader, tmpl, env.Cert(t, "inter"), signer.Public(), env.Key(t, "inter"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "listec.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return "pkcs11:object=" + label, cert, path
}

// agreement reads the KeyAgreeRecipientInfo for cert out of der as the list agent does.
func agreement(t *testing.T, der []byte, cert *x509.Certificate) (*cms.Enveloped, hsm.KeyAgreement) {
	t.Helper()
	e, err := cms.ParseEnveloped(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, ri := range e.RecipientInfos {
		ka, err := ri.KeyAgreement(cert)
		if errors.Is(err, cms.ErrNotRecipient) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return e, hsm.KeyAgreement{OriginatorKey: ka.OriginatorKey, Hash: ka.Hash, SharedInfo: ka.SharedInfo, KEKSize: ka.KEKSize, Wrapped: ka.EncryptedKey}
	}
	t.Fatal("no key agreement entry for the certificate")
	return nil, hsm.KeyAgreement{}
}

// TestUnwrapAgreedCEK unwraps, on the token, the content key of what openssl encrypts to a P-256
// key held there (every KDF hash openssl writes, AES-128 and AES-256 wraps, AES-GCM content), and
// re-wraps it for bob, who must then read the post's own ciphertext.
func TestUnwrapAgreedCEK(t *testing.T) {
	tok, env := open(t, nil)
	if ock(env) {
		t.Skip("opencryptoki 3.8.1's software token: the list's EC path is tested on SoftHSM2")
	}
	ctx := context.Background()
	uri, cert, certFile := ecListKey(t, tok, env)
	bob, bobKey := env.Cert(t, "bob"), env.Key(t, "bob")
	msg := []byte("Content-Type: text/plain\r\n\r\nto the EC list\r\n")
	before, err := tok.SecretKeysForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// The shared secrets and key-encryption keys are gone with the content keys.
		if after, err := tok.SecretKeysForTest(ctx); err != nil || after != before {
			t.Errorf("%d secret keys on the token before, %d (%v) after", before, after, err)
		}
	}()
	for _, v := range []struct {
		name string
		opt  interop.EncryptOptions
		kdf  string
		hash crypto.Hash
	}{
		{"default sha1 kdf", interop.EncryptOptions{Cipher: "aes256"}, "", crypto.SHA1},
		{"sha256 kdf keyid", interop.EncryptOptions{Cipher: "aes256", KeyID: true}, "sha256", crypto.SHA256},
		{"sha384 kdf", interop.EncryptOptions{Cipher: "aes256"}, "sha384", crypto.SHA384},
		{"sha512 kdf", interop.EncryptOptions{Cipher: "aes256"}, "sha512", crypto.SHA512},
		{"sha224 kdf aes128 wrap", interop.EncryptOptions{Cipher: "aes128"}, "sha224", crypto.SHA224},
		{"aes-256-gcm", interop.EncryptOptions{Cipher: "aes-256-gcm"}, "sha256", crypto.SHA256},
	} {
		t.Run("ok "+v.name, func(t *testing.T) {
			if v.kdf != "" {
				v.opt.KeyOpts = []string{"ecdh_kdf_md:" + v.kdf}
			}
			der := interop.OpenSSLEncryptFiles(t, []string{certFile}, msg, v.opt)
			e, ka := agreement(t, der, cert)
			if ka.Hash != v.hash {
				t.Fatalf("KDF hash %v, want %v", ka.Hash, v.hash)
			}
			k, err := tok.UnwrapAgreedCEK(ctx, uri, ka)
			if err != nil {
				t.Fatalf("UnwrapAgreedCEK: %v", err)
			}
			defer k.Destroy(ctx)
			ri, err := cms.KeyTransRecipient(ctx, k, bob, cms.KeyTransOptions{})
			if err != nil {
				t.Fatal(err)
			}
			forBob, err := e.WithRecipients([]*cms.RecipientInfo{ri})
			if err != nil {
				t.Fatal(err)
			}
			got, err := cms.DecryptWithKey(forBob.Bytes(), bob, bobKey)
			if err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("bob reads %q, %v", got, err)
			}
		})
	}
}

func TestUnwrapAgreedCEKErrors(t *testing.T) {
	tok, env := open(t, nil)
	if ock(env) {
		t.Skip("opencryptoki 3.8.1's software token: the list's EC path is tested on SoftHSM2")
	}
	ctx := context.Background()
	uri, cert, certFile := ecListKey(t, tok, env)
	otherURI, _, _ := ecListKey(t, tok, env)
	msg := []byte("Content-Type: text/plain\r\n\r\nx\r\n")
	before, err := tok.SecretKeysForTest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, ka := agreement(t, interop.OpenSSLEncryptFiles(t, []string{certFile}, msg, interop.EncryptOptions{Cipher: "aes256", KeyOpts: []string{"ecdh_kdf_md:sha256"}}), cert)
	tampered := ka
	tampered.Wrapped = bytes.Clone(ka.Wrapped)
	tampered.Wrapped[len(ka.Wrapped)-1] ^= 1
	offCurve := ka
	offCurve.OriginatorKey = bytes.Clone(ka.OriginatorKey)
	offCurve.OriginatorKey[len(ka.OriginatorKey)-1] ^= 1
	wrongInfo := ka
	wrongInfo.SharedInfo = append(bytes.Clone(ka.SharedInfo), 0)
	noHash := ka
	noHash.Hash = crypto.MD5
	short := ka
	short.Wrapped = ka.Wrapped[:8]
	for _, tc := range []struct {
		name string
		uri  string
		ka   hsm.KeyAgreement
		want error
	}{
		{"fail wrong key", otherURI, ka, hsm.ErrUnwrap},
		{"fail tampered wrapped key", uri, tampered, hsm.ErrUnwrap},
		{"fail originator point off the curve", uri, offCurve, hsm.ErrUnwrap},
		{"fail other shared info", uri, wrongInfo, hsm.ErrUnwrap},
		{"fail kdf hash", uri, noHash, hsm.ErrUnwrap},
		{"fail short wrapped key", uri, short, hsm.ErrUnwrap},
		{"fail empty", uri, hsm.KeyAgreement{Hash: crypto.SHA256, KEKSize: 32}, hsm.ErrUnwrap},
		{"fail rsa key", "pkcs11:object=list", ka, hsm.ErrNotPermitted},
		{"fail unknown key", "pkcs11:object=nobody", ka, hsm.ErrKeyNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := tok.UnwrapAgreedCEK(ctx, tc.uri, tc.ka)
			if err == nil {
				k.Destroy(ctx)
				t.Fatal("UnwrapAgreedCEK succeeded")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v is not %q", err, tc.want)
			}
			if hsm.IsTemporary(err) {
				t.Errorf("error %v is temporary; bad input is not", err)
			}
			t.Log(err)
		})
	}
	if n, err := tok.SecretKeysForTest(ctx); err != nil || n != before {
		t.Errorf("%d secret keys on the token before the failures, %d (%v) after", before, n, err)
	}
	// The key still works after all that.
	k, err := tok.UnwrapAgreedCEK(ctx, uri, ka)
	if err != nil {
		t.Fatalf("UnwrapAgreedCEK after failures: %v", err)
	}
	k.Destroy(ctx)
}
