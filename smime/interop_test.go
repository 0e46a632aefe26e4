package smime_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/smime"
)

func TestMain(m *testing.M) {
	code := m.Run()
	interop.Cleanup()
	softhsmtest.Cleanup()
	os.Exit(code)
}

// submitted is a message as a client hands it over: LF line endings, 8-bit subject, a
// multipart body.
const submitted = "From: Alice <alice@example.test>\n" +
	"To: Bob <bob@example.test>\n" +
	"Subject: Grüße =?utf-8?q?caf=C3=A9?=\n" +
	"MIME-Version: 1.0\n" +
	"Content-Type: multipart/alternative; boundary=\"alt\"\n" +
	"\n" +
	"--alt\n" +
	"Content-Type: text/plain; charset=utf-8\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"Grüße\n" +
	"--alt\n" +
	"Content-Type: text/html; charset=utf-8\n" +
	"\n" +
	"<p>hi</p>\n" +
	"--alt--\n"

// signEntity signs entity detached with the test PKI through OpenSSL, standing in for package
// cms, and wraps it with SignedEntity.
func signEntity(t *testing.T, pki string, entity []byte) []byte {
	t.Helper()
	s, err := smime.ParseSigned(interop.OpenSSLSign(t, pki, "alice", entity, interop.SignOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s.Content, entity) {
		t.Fatal("OpenSSL signed something other than the entity")
	}
	return smime.SignedEntity(entity, s.Signature, "sha-256")
}

var verifiers = map[string]func(testing.TB, string, []byte) ([]byte, error){
	"openssl": interop.OpenSSLVerify,
	"gpgsm":   interop.GpgsmVerify,
	"cmsutil": interop.CmsutilVerify,
}

// TestSignedOnlyPackageVerifies proves the multipart/signed framing: a signed-only package made
// from a submitted message, as submitted or made 7-bit, verifies in OpenSSL, gpgsm and NSS, and
// a tampered one does not.
func TestSignedOnlyPackageVerifies(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	outer, entity, err := smime.Split(strings.NewReader(submitted))
	if err != nil {
		t.Fatal(err)
	}
	sevenbit, err := smime.Encode7bit(entity)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(sevenbit, entity) || !bytes.Contains(sevenbit, []byte("Gr=C3=BC=C3=9Fe")) {
		t.Fatalf("Encode7bit did not encode the 8-bit part:\n%s", sevenbit)
	}
	for form, entity := range map[string][]byte{"as submitted": entity, "7bit": sevenbit} {
		var msg bytes.Buffer
		if err := smime.WriteSigned(&msg, outer, signEntity(t, pki, entity)); err != nil {
			t.Fatal(err)
		}
		tampered := bytes.Replace(msg.Bytes(), []byte("<p>hi</p>"), []byte("<p>HI</p>"), 1)
		for tool, verify := range verifiers {
			t.Run("ok "+form+" "+tool, func(t *testing.T) {
				t.Parallel()
				got, err := verify(t, pki, msg.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, entity) {
					t.Fatalf("%s returned %q, want the entity %q", tool, got, entity)
				}
			})
			t.Run("fail tampered "+form+" "+tool, func(t *testing.T) {
				t.Parallel()
				if _, err := verify(t, pki, tampered); !errors.Is(err, interop.ErrRejected) {
					t.Fatalf("%s accepted a tampered body", tool)
				}
			})
		}
	}
}

// TestSignThenEncryptPackage proves the whole RFC 8551 shape: WritePackage around DER that
// encrypts the multipart/signed entity decrypts in each decoder, and what comes out verifies.
func TestSignThenEncryptPackage(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	outer, entity, err := smime.Split(strings.NewReader(submitted))
	if err != nil {
		t.Fatal(err)
	}
	signed := signEntity(t, pki, entity)
	der := interop.OpenSSLEncrypt(t, pki, signed, []string{"bob", "carol"}, interop.EncryptOptions{})
	var msg bytes.Buffer
	if err := smime.WritePackage(&msg, outer, smime.TypeEnvelopedData, bytes.NewReader(der)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(msg.Bytes(), []byte("Subject: Grüße =?utf-8?q?caf=C3=A9?=\r\n")) {
		t.Fatal("subject did not survive")
	}
	decrypters := map[string]func(testing.TB, string, string, []byte) ([]byte, error){
		"openssl": interop.OpenSSLDecrypt,
		"gpgsm":   interop.GpgsmDecrypt,
		"cmsutil": interop.CmsutilDecrypt,
	}
	for tool, decrypt := range decrypters {
		t.Run("ok "+tool, func(t *testing.T) {
			t.Parallel()
			got, err := decrypt(t, pki, "carol", msg.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, signed) {
				t.Fatalf("%s decrypted something else", tool)
			}
			if _, err := verifiers[tool](t, pki, got); err != nil {
				t.Fatalf("%s: decrypted content does not verify: %v", tool, err)
			}
		})
	}
}
