package pipeline_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/internal/interop"
	"appliance/lists"
	"appliance/smime"
	"appliance/split"
)

// TestListPostCertificates: a signed plain post whose signature carries, next to the poster's
// chain, the certificate of someone else (carol, here) reaches members inside the list's
// encryption without that certificate; the poster's signature still verifies in OpenSSL.
func TestListPostCertificates(t *testing.T) {
	members := []string{"bob@example.test", "carol@example.test", "dave@example.test"}
	ls := newListPipeline(t, split.Policy{}, nil, lists.List{Posters: lists.Posters{Members: true}}, members)
	pki := ls.env.PKI
	extra := filepath.Join(t.TempDir(), "extra.pem")
	var certs []byte
	for _, f := range []string{"inter.pem", "carol.pem"} {
		b, err := os.ReadFile(filepath.Join(pki, f))
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, b...)
	}
	if err := os.WriteFile(extra, certs, 0o600); err != nil {
		t.Fatal(err)
	}
	carol := ls.env.Cert(t, "carol")
	for _, opaque := range []bool{false, true} {
		args := []string{"cms", "-sign", "-binary", "-md", "sha256", "-signer", filepath.Join(pki, "bob.pem"),
			"-inkey", filepath.Join(pki, "bob.key"), "-certfile", extra}
		if opaque {
			args = append(args, "-nodetach")
		}
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = strings.NewReader("Content-Type: text/plain\r\n\r\nfor the list\r\n")
		signed, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl: %v", err)
		}
		post := "From: bob@example.test\r\nTo: " + listAddr + "\r\nSubject: signed\r\n" + string(signed)
		s, err := ls.pipe.Process(context.Background(), "L9", postEnv("bob@example.test"), strings.NewReader(post))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Packages) != 3 {
			t.Fatalf("opaque=%v: %d packages", opaque, len(s.Packages))
		}
		for _, pk := range s.Packages {
			rcpt := strings.TrimSuffix(pk.RcptTo[0], "@example.test")
			outer, err := smime.ParseSigned(render(t, pk))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := interop.OpenSSLDecrypt(t, pki, rcpt, outer.Content)
			if err != nil {
				t.Fatalf("%s cannot decrypt: %v", rcpt, err)
			}
			entity, err := interop.OpenSSLVerify(t, pki, plain) // the list's signature
			if err != nil {
				t.Fatal(err)
			}
			var sigDER []byte
			if opaque {
				p, err := smime.Parse(bytes.NewReader(entity), 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				sigDER = p.DER
			} else {
				ps, err := smime.ParseSigned(entity)
				if err != nil {
					t.Fatalf("%s got %.300q: %v", rcpt, entity, err)
				}
				sigDER = ps.Signature
			}
			sd, err := cms.ParseSigned(sigDER)
			if err != nil {
				t.Fatal(err)
			}
			hasBob := false
			for _, c := range sd.Certificates {
				if c.Equal(carol) {
					t.Errorf("opaque=%v: %s's copy carries carol's certificate from the post's signature", opaque, rcpt)
				}
				hasBob = hasBob || c.Equal(ls.env.Cert(t, "bob"))
			}
			if !hasBob || bytes.Contains(entity, carol.Raw) {
				t.Errorf("opaque=%v: %s's copy: poster's certificate kept %v", opaque, rcpt, hasBob)
			}
			if content, err := interop.OpenSSLVerify(t, pki, entity); err != nil || !bytes.Contains(content, []byte("for the list")) {
				t.Errorf("opaque=%v: the poster's signature no longer verifies for %s: %v", opaque, rcpt, err)
			}
		}
	}
}
