package cms

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/softhsmtest"
)

// TestKeyAgreeDecoders measures what the plan rule for EC recipients rests on (README, EC
// recipients): bob (RSA) reads an envelope of RSA RecipientInfos with NSS cmsutil and gpgsm; once
// it also holds a KeyAgreeRecipientInfo for frank, NSS refuses the whole envelope (gpgsm still
// reads bob's entry), and frank's entry itself is read by openssl.
func TestKeyAgreeDecoders(t *testing.T) {
	env := softhsmtest.Setup(t)
	ctx := context.Background()
	msg := []byte("Content-Type: text/plain\r\n\r\nmixed envelope\r\n")
	key := newSoftKey(t)
	ec, err := Encrypt(ctx, key, AES256CBC, bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	kt, err := KeyTransRecipient(ctx, key, env.Cert(t, "bob"), KeyTransOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ka, err := KeyAgreeRecipient(ctx, key, env.Cert(t, "frank"), KeyAgreeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsaOnly, err := Envelope(ec, []*RecipientInfo{kt})
	if err != nil {
		t.Fatal(err)
	}
	mixed, err := Envelope(ec, []*RecipientInfo{kt, ka})
	if err != nil {
		t.Fatal(err)
	}
	nss := func(der []byte) bool {
		got, _, err := cmsutil(t, nssDB(t, env, "bob"), der, nil)
		return err == nil && bytes.Equal(got, msg)
	}
	home := gpgsmHome(t, env, "bob")
	gpgsm := func(der []byte) bool {
		out := filepath.Join(t.TempDir(), "out")
		status, _ := gpgsmRun(home, "--pinentry-mode", "loopback", "--passphrase-fd", "0", "-o", out, "--decrypt", writeFile(t, "in.der", der))
		got, _ := os.ReadFile(out)
		return strings.Contains(status, "DECRYPTION_OKAY") && bytes.Equal(got, msg)
	}
	if !nss(rsaOnly.Bytes()) || !gpgsm(rsaOnly.Bytes()) {
		t.Fatal("NSS or gpgsm cannot read bob's RSA-only envelope")
	}
	if got, err := opensslDecrypt(t, env, mixed.Bytes(), "bob"); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("openssl as bob on the mixed envelope: %q, %v", got, err)
	}
	if nss(mixed.Bytes()) {
		t.Error("NSS read an envelope holding a KeyAgreeRecipientInfo: the own-package rule may be relaxed for NSS")
	}
	if !gpgsm(mixed.Bytes()) {
		t.Error("gpgsm no longer reads bob's RecipientInfo next to a KeyAgreeRecipientInfo")
	}
	// frank's own package: openssl reads it.
	ecOnly, err := Envelope(ec, []*RecipientInfo{ka})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := opensslDecrypt(t, env, ecOnly.Bytes(), "frank"); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("openssl as frank: %q, %v", got, err)
	}
	// gpgsm 2.2 is not asked as frank: importing his EC PKCS#12 crashes it here.
}
