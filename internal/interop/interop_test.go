package interop_test

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/smime"

	"github.com/emersion/go-message/textproto"
)

func TestMain(m *testing.M) {
	code := m.Run()
	interop.Cleanup()
	softhsmtest.Cleanup()
	os.Exit(code)
}

type decoder func(t testing.TB, pkiDir, user string, msg []byte) ([]byte, error)

var decrypters = map[string]decoder{
	"openssl": interop.OpenSSLDecrypt,
	"gpgsm":   interop.GpgsmDecrypt,
	"cmsutil": interop.CmsutilDecrypt,
}

var verifiers = map[string]func(t testing.TB, pkiDir string, signed []byte) ([]byte, error){
	"openssl": interop.OpenSSLVerify,
	"gpgsm":   interop.GpgsmVerify,
	"cmsutil": interop.CmsutilVerify,
}

const content = "Content-Type: text/plain; charset=utf-8\r\n\r\nGrüße, interop\r\n"

// TestDecryptMatrix records which decoder reads which combination, as measured with OpenSSL
// 3.0, gpgsm 2.2.40 and NSS 3.87 (the README table). A decoder that starts reading a
// combination it did not fails this test on purpose: update the table, then the expectation.
func TestDecryptMatrix(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	all := map[string]bool{"openssl": true, "gpgsm": true, "cmsutil": true}
	opensslOnly := map[string]bool{"openssl": true}
	tests := []struct {
		name string
		opt  interop.EncryptOptions
		want map[string]bool // decoder -> reads it
	}{
		{"ok compat: aes-256-cbc, rsaEncryption, issuer and serial", interop.EncryptOptions{}, all},
		{"ok aes-256-cbc, rsaEncryption, subjectKeyIdentifier (not gpgsm)", interop.EncryptOptions{KeyID: true},
			map[string]bool{"openssl": true, "cmsutil": true}},
		{"ok aes-256-gcm AuthEnvelopedData (openssl only)", interop.EncryptOptions{Cipher: "aes-256-gcm"}, opensslOnly},
		{"ok aes-256-gcm with subjectKeyIdentifier (openssl only)", interop.EncryptOptions{Cipher: "aes-256-gcm", KeyID: true}, opensslOnly},
		{"ok aes-256-cbc, RSA-OAEP SHA-1 (openssl only)", interop.EncryptOptions{OAEP: true}, opensslOnly},
		{"ok aes-256-cbc, RSA-OAEP SHA-256 (openssl only)", interop.EncryptOptions{OAEP: true, OAEPDigest: "sha256"}, opensslOnly},
		{"ok modern: aes-256-gcm, RSA-OAEP SHA-256, SKI (openssl only)", interop.EncryptOptions{Cipher: "aes-256-gcm", OAEP: true, OAEPDigest: "sha256", KeyID: true}, opensslOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			der := interop.OpenSSLEncrypt(t, pki, []byte(content), []string{"bob", "carol"}, tt.opt)
			for tool, decrypt := range decrypters {
				for _, user := range []string{"bob", "carol"} {
					got, err := decrypt(t, pki, user, der)
					if tt.want[tool] {
						if err != nil {
							t.Errorf("%s as %s: %v", tool, user, err)
						} else if string(got) != content {
							t.Errorf("%s as %s: content = %q, want %q", tool, user, got, content)
						}
						continue
					}
					if err == nil {
						t.Errorf("%s as %s read it; the measured table says it cannot: update README and this test", tool, user)
					} else if !errors.Is(err, interop.ErrRejected) {
						t.Errorf("%s as %s: error %v does not wrap ErrRejected", tool, user, err)
					}
				}
			}
		})
	}
}

func TestDecryptFailsForNonRecipient(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	der := interop.OpenSSLEncrypt(t, pki, []byte(content), []string{"bob"}, interop.EncryptOptions{})
	for tool, decrypt := range decrypters {
		t.Run("fail "+tool+" as dave", func(t *testing.T) {
			t.Parallel()
			got, err := decrypt(t, pki, "dave", der)
			if !errors.Is(err, interop.ErrRejected) {
				t.Fatalf("dave decrypted bob's message: %q, %v", got, err)
			}
		})
	}
}

// TestDecryptSMIME feeds the helpers a whole application/pkcs7-mime message, as a test of the
// appliance's output would.
func TestDecryptSMIME(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	der := interop.OpenSSLEncrypt(t, pki, []byte(content), []string{"erin"}, interop.EncryptOptions{})
	outer, _, err := smime.Split(strings.NewReader("From: alice@example.test\r\nTo: erin@example.test\r\nSubject: s\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	var msg bytes.Buffer
	if err := smime.WritePackage(&msg, outer, smime.TypeEnvelopedData, bytes.NewReader(der)); err != nil {
		t.Fatal(err)
	}
	for tool, decrypt := range decrypters {
		t.Run("ok "+tool, func(t *testing.T) {
			t.Parallel()
			got, err := decrypt(t, pki, "erin", msg.Bytes())
			if err != nil || string(got) != content {
				t.Fatalf("%s: %q, %v", tool, got, err)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	detached := interop.OpenSSLSign(t, pki, "alice", []byte(content), interop.SignOptions{})
	encapsulated := interop.OpenSSLSign(t, pki, "alice", []byte(content), interop.SignOptions{Encapsulated: true})
	tamperedDER := bytes.Clone(encapsulated)
	i := bytes.Index(tamperedDER, []byte("interop"))
	if i < 0 {
		t.Fatal("content not found in SignedData")
	}
	tamperedDER[i] = 'I'
	var opaque bytes.Buffer // application/pkcs7-mime; smime-type=signed-data
	if err := smime.WritePackage(&opaque, textproto.Header{}, smime.TypeSignedData, bytes.NewReader(encapsulated)); err != nil {
		t.Fatal(err)
	}
	otherSigner := interop.OpenSSLSign(t, pki, "grace", []byte(content), interop.SignOptions{}) // expired certificate
	tests := []struct {
		name    string
		msg     []byte
		wantErr bool
		skip    string // decoder that does not judge this case
	}{
		{name: "ok detached multipart/signed", msg: detached},
		{name: "ok LF line endings in transit", msg: bytes.ReplaceAll(detached, []byte("\r\n"), []byte("\n"))},
		{name: "ok encapsulated SignedData DER", msg: encapsulated},
		{name: "ok application/pkcs7-mime signed-data", msg: opaque.Bytes()},
		{name: "ok RSA-PSS", msg: interop.OpenSSLSign(t, pki, "alice", []byte(content), interop.SignOptions{PSS: true})},
		{name: "ok ECDSA P-256", msg: interop.OpenSSLSign(t, pki, "frank", []byte(content), interop.SignOptions{})},
		{name: "fail tampered signed body", msg: bytes.Replace(detached, []byte("interop"), []byte("Interop"), 1), wantErr: true},
		{name: "fail tampered encapsulated content", msg: tamperedDER, wantErr: true},
		// cmsutil's signerN.status reports the signature, not the certificate's validity period.
		{name: "fail expired signer certificate", msg: otherSigner, wantErr: true, skip: "cmsutil"},
	}
	for _, tt := range tests {
		for tool, verify := range verifiers {
			if tool == tt.skip {
				continue
			}
			t.Run(tt.name+" "+tool, func(t *testing.T) {
				t.Parallel()
				got, err := verify(t, pki, tt.msg)
				if tt.wantErr {
					if !errors.Is(err, interop.ErrRejected) {
						t.Fatalf("%s accepted it: %q, %v", tool, got, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if string(bytes.ReplaceAll(got, []byte("\r\n"), []byte("\n"))) != strings.ReplaceAll(content, "\r\n", "\n") {
					t.Fatalf("%s: content = %q", tool, got)
				}
			})
		}
	}
}

func TestOpenSSLPrint(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	tests := []struct {
		name string
		opt  interop.EncryptOptions
		want []string
	}{
		{"ok issuer and serial", interop.EncryptOptions{}, []string{"envelopedData", "issuerAndSerialNumber", "rsaEncryption", "aes-256-cbc"}},
		{"ok SKI, OAEP, GCM", interop.EncryptOptions{Cipher: "aes-256-gcm", KeyID: true, OAEP: true, OAEPDigest: "sha256"},
			[]string{"authEnvelopedData", "subjectKeyIdentifier", "rsaesOaep", "sha256", "aes-256-gcm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := interop.OpenSSLPrint(t, interop.OpenSSLEncrypt(t, pki, []byte(content), []string{"bob"}, tt.opt))
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("print lacks %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("fail not DER", func(t *testing.T) {
		if _, err := interop.OpenSSLPrint(t, []byte{0x30, 0x03, 0x01}); !errors.Is(err, interop.ErrRejected) {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestNeedSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	reached := false
	t.Run("missing tool", func(t *testing.T) {
		interop.Need(t, "no-such-tool-for-interop")
		reached = true
	})
	if reached {
		t.Fatal("Need did not stop the test")
	}
}

// TestOpenSSLSignAlgorithms makes sure the signatures TestVerify feeds the decoders are what
// their names say.
func TestOpenSSLSignAlgorithms(t *testing.T) {
	pki := softhsmtest.Setup(t).PKI
	tests := []struct {
		name, user string
		opt        interop.SignOptions
		want       string
	}{
		{"ok PKCS #1 v1.5", "alice", interop.SignOptions{}, "rsaEncryption"},
		{"ok PSS", "alice", interop.SignOptions{PSS: true}, "rsassaPss"},
		{"ok ECDSA", "frank", interop.SignOptions{}, "ecdsa-with-SHA256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := smime.ParseSigned(interop.OpenSSLSign(t, pki, tt.user, []byte(content), tt.opt))
			if err != nil {
				t.Fatal(err)
			}
			out, err := interop.OpenSSLPrint(t, s.Signature)
			if err != nil {
				t.Fatal(err)
			}
			// The signer info's algorithm; the certificates' own algorithms come before it.
			if !regexp.MustCompile(`signatureAlgorithm: *\n *algorithm: ` + tt.want).MatchString(out) {
				t.Fatalf("signature is not %s:\n%s", tt.want, out)
			}
		})
	}
}
