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
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
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
		Edits:      split.HeaderEdits{Fields: []split.FieldEdit{{Key: "From"}, {Key: "To"}, {Key: "Subject"}}},
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

// TestShareContent: packages split from one client CMS write the same bytes with the shared
// base64 as without it, and packages from another CMS are not given it.
func TestShareContent(t *testing.T) {
	env := softhsmtest.Setup(t)
	der := interop.OpenSSLEncrypt(t, env.PKI, []byte("Content-Type: text/plain\r\n\r\nshared\r\n"), []string{"bob", "dave"}, interop.EncryptOptions{})
	parsed, err := cms.ParseEnveloped(der)
	if err != nil {
		t.Fatal(err)
	}
	other, err := cms.ParseEnveloped(bytes.Clone(der)) // its own copy: content equal, not shared
	if err != nil {
		t.Fatal(err)
	}
	var h textproto.Header
	h.Set("From", "alice@example.test")
	build := func(e *cms.Enveloped, ri int, rcpt string) *seal.Package {
		enc, err := e.WithRecipients(e.RecipientInfos[ri : ri+1])
		if err != nil {
			t.Fatal(err)
		}
		p, err := seal.NewPassThrough(split.Package{Recipients: []string{rcpt}}, h, smime.TypeEnvelopedData, enc)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	render := func(p *seal.Package) []byte {
		var b bytes.Buffer
		if _, err := p.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	pkgs := []*seal.Package{build(parsed, 0, "bob@example.test"), build(parsed, 1, "dave@example.test"), build(other, 0, "bob@example.test")}
	var before [][]byte
	for _, p := range pkgs {
		before = append(before, render(p))
	}
	seal.ShareContent(pkgs)
	for i, p := range pkgs {
		if got := render(p); !bytes.Equal(got, before[i]) {
			t.Fatalf("package %d changed when its content was shared", i)
		}
	}
}
