package cms

import (
	"context"
	"crypto"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

// TestWriteTestdata regenerates the fuzz seeds in testdata/ when CMS_WRITE_TESTDATA=1: messages
// made by openssl cms -encrypt (as clients send them) and by this package.
func TestWriteTestdata(t *testing.T) {
	if os.Getenv("CMS_WRITE_TESTDATA") != "1" {
		// A tool, not a test: it rewrites files in the repository.
		t.Skip("set CMS_WRITE_TESTDATA=1 to regenerate testdata")
	}
	env := softhsmtest.Setup(t)
	msg := []byte("Content-Type: text/plain\r\n\r\nseed\r\n")
	write := func(name string, der []byte) {
		if err := os.WriteFile(filepath.Join("testdata", name), der, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range opensslVariants {
		write("enveloped-openssl-"+strings.ReplaceAll(v.name, " ", "-")+".der",
			opensslEncrypt(t, env, msg, v.args, v.perRecip, "bob", "carol"))
	}
	for _, v := range variants {
		_, der := build(t, env, v.alg, v.opts, msg, "bob", "carol")
		write("enveloped-ours-"+strings.ReplaceAll(v.name, " ", "-")+".der", der)
	}
	// EC recipients: openssl's KeyAgreeRecipientInfos (SHA-256 KDF) and this package's.
	write("enveloped-openssl-ec-sha256kdf.der", opensslEncrypt(t, env, msg, []string{"-aes256"},
		[]string{"-keyopt", "ecdh_kdf_md:sha256"}, "frank", "peggy"))
	{
		key := newSoftKey(t)
		ec, err := Encrypt(context.Background(), key, AES256GCM, strings.NewReader(string(msg)))
		if err != nil {
			t.Fatal(err)
		}
		var ris []*RecipientInfo
		for i, u := range []string{"frank", "peggy"} {
			ri, err := KeyAgreeRecipient(context.Background(), key, env.Cert(t, u), KeyAgreeOptions{ID: RecipientIDKind(i)})
			if err != nil {
				t.Fatal(err)
			}
			ris = append(ris, ri)
		}
		kt, err := KeyTransRecipient(context.Background(), key, env.Cert(t, "bob"), KeyTransOptions{})
		if err != nil {
			t.Fatal(err)
		}
		enc, err := Envelope(ec, append(ris, kt))
		if err != nil {
			t.Fatal(err)
		}
		write("enveloped-ours-gcm-keyagree.der", enc.Bytes())
	}
	_, inter := env.Roots(t)
	for name, o := range map[string]struct {
		user string
		opts SignOptions
	}{
		"rsa":              {"alice", SignOptions{EncryptionCert: env.Cert(t, "alice")}},
		"rsa-pss-detached": {"alice", SignOptions{PSS: true, Detached: true}},
		"ecdsa-sha384":     {"frank", SignOptions{Hash: crypto.SHA384}},
	} {
		der, err := Sign(env.Key(t, o.user), []*x509.Certificate{env.Cert(t, o.user), inter}, msg, o.opts)
		if err != nil {
			t.Fatal(err)
		}
		write("signed-ours-"+name+".der", der)
	}
	in := writeFile(t, "msg", msg)
	out := filepath.Join(t.TempDir(), "s.der")
	if _, err := openssl(t, "cms", "-sign", "-binary", "-outform", "DER", "-stream", "-in", in, "-out", out,
		"-signer", env.File("alice.pem"), "-inkey", env.File("alice.key"), "-certfile", env.File("inter.pem")); err != nil {
		t.Fatal(err)
	}
	der, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	write("signed-openssl-stream.der", der)
}
