package seal_test

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

func TestNewPassThrough(t *testing.T) {
	der, err := os.ReadFile(filepath.Join("..", "cms", "testdata", "enveloped-openssl-stream-ber-aes256-cbc.der"))
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
	outer, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(
		"From: alice@example.test\r\nTo: bob@example.test\r\nBcc: dave@example.test\r\nSubject: s\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: application/x-pkcs7-mime; name=smime.p7m\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	pk := split.Package{
		Recipients: []string{"bob@example.test"},
		Certs:      []split.Cert{{ID: "ri:0", Owner: "bob@example.test"}},
		Profile:    "passthrough",
		Edits:      split.HeaderEdits{Delete: []string{"Bcc"}},
	}
	tests := []struct {
		name      string
		pk        split.Package
		smimeType string
		der       *cms.Encoded
		ok        bool
	}{
		{"ok enveloped-data", pk, smime.TypeEnvelopedData, enc, true},
		{"ok authEnveloped-data label", pk, smime.TypeAuthEnvelopedData, enc, true},
		{"fail signed-data", pk, smime.TypeSignedData, enc, false},
		{"fail no smime-type", pk, "", enc, false},
		{"fail no cms", pk, smime.TypeEnvelopedData, nil, false},
		{"fail empty cms", pk, smime.TypeEnvelopedData, &cms.Encoded{}, false},
		{"fail no recipients", split.Package{Profile: "passthrough"}, smime.TypeEnvelopedData, enc, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := seal.NewPassThrough(tt.pk, outer, tt.smimeType, tt.der)
			if !tt.ok {
				if !errors.Is(err, seal.ErrPassThrough) {
					t.Fatalf("got %v, want ErrPassThrough", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.CMS() != tt.der || p.Size() != tt.der.Len() || p.Recipients[0] != "bob@example.test" {
				t.Fatalf("package %+v", p.Package)
			}
			var b bytes.Buffer
			if _, err := p.WriteTo(&b); err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b.Bytes(), []byte("dave")) || !bytes.Contains(b.Bytes(), []byte("smime-type="+tt.smimeType)) ||
				bytes.Contains(b.Bytes(), []byte("x-pkcs7-mime")) {
				t.Fatalf("package text:\n%s", b.Bytes())
			}
			if !outer.Has("Bcc") {
				t.Fatal("the caller's header was edited")
			}
			got, err := smime.Parse(&b, int64(b.Len()))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.DER, tt.der.Bytes()) {
				t.Fatal("the cms did not survive the round trip")
			}
		})
	}
}
