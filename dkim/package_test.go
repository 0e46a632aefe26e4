package dkim_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"appliance/directory"
	"appliance/dkim"
	"appliance/hsm"
	"appliance/internal/hsmkeys"
	"appliance/internal/softhsmtest"
	"appliance/journal"
	"appliance/seal"

	"github.com/emersion/go-message/textproto"
)

// TestSealedPackage: a package as seal writes it (here the journal package: S/MIME enveloped
// data, folded base64, the seal's own header) signed through the queue's io.WriterTo form,
// verifies with dkimpy; with a byte of its ciphertext changed it does not.
func TestSealedPackage(t *testing.T) {
	env := softhsmtest.Setup(t)
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	signer, err := tok.Signer(context.Background(), "pkcs11:token=appliance;object=alice")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	j := &journal.Journal{
		Address: "journal@example.test", From: "alice@example.test", Hostname: "relay.example.test",
		Certs:  []*x509.Certificate{env.Cert(t, "bob")},
		Sender: seal.Sender{Signer: signer, Chain: chain},
		Sealer: &seal.Sealer{NewKey: hsmkeys.Token{Token: tok}.NewContentKey, OAEPHash: tok.OAEPHash},
	}
	msg := "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: s\r\n\r\n" + strings.Repeat("line of text\r\n", 200)
	rep := journal.NewReport("id", time.Now(), "alice@example.test", "", textproto.Header{}, []string{"bob@example.test"})
	sealed, err := j.Seal(context.Background(), rep, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	keys := []dkim.Key{{Domain: "example.test", Selector: "j", Signer: signer}}
	s, err := dkim.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, keys)
	wt, err := s.WriterTo(sealed.Body)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	signedPkg := b.String()
	if out, ok := v.verify(signedPkg); !ok {
		t.Fatalf("sealed package:\n%s", out)
	}
	_, body, _ := strings.Cut(signedPkg, "\r\n\r\n")
	i := strings.Index(signedPkg, body) + len(body)/2
	flip := byte('A')
	if signedPkg[i] == 'A' {
		flip = 'B'
	}
	changed := signedPkg[:i] + string(flip) + signedPkg[i+1:]
	if out, ok := v.verify(changed); ok {
		t.Fatalf("changed ciphertext still verifies:\n%s", out)
	}
}
