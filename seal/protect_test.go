package seal_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/mail"
	"os"
	"slices"
	"strings"
	"testing"

	"appliance/directory"
	"appliance/internal/interop"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

const hpMessage = "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nCc: carol@example.test\r\n" +
	"Bcc: dave@example.test, erin@example.test\r\nReply-To: dave@example.test\r\n" +
	"Subject: the Jones contract\r\nKeywords: jones\r\nDate: Sat, 28 Nov 2026 15:00:00 +0000\r\n" +
	"Message-ID: <hp@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n\r\nTerms inside.\r\n"

// hpPlan plans hpMessage with header protection on, for bob and carol (To, Cc) and dave and
// erin (Bcc); frank has no certificate and, with plaintext, gets a signed-only package.
func (r *rig) hpPlan(t testing.TB, profile string, mode split.BccMode, keepBcc bool, msg []byte) (split.Input, *split.Plan, map[string]*x509.Certificate) {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	rcpts := []string{"bob@example.test", "carol@example.test", "dave@example.test", "erin@example.test", "frank@example.test"}
	in := split.Input{Header: h, MailFrom: "alice@example.test", RcptTo: rcpts, Certs: map[string][]split.Cert{},
		Policy: split.Policy{Bcc: mode, SelfCopy: true, Profile: profile, KeepBcc: keepBcc, MissingCert: split.Plaintext,
			HeaderProtection: split.HeaderProtection{On: true}}}
	certs := map[string]*x509.Certificate{}
	add := func(name string) split.Cert {
		c := r.env.Cert(t, name)
		id := directory.CertID(c)
		certs[id] = c
		return split.Cert{ID: id, Owner: r.users[name], NotBefore: c.NotBefore}
	}
	for _, a := range rcpts[:4] {
		in.Certs[a] = []split.Cert{add(r.byAddr[a])}
	}
	in.SenderCerts = []split.Cert{add("alice")}
	p, err := split.Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := split.CheckPrivacy(in, p); err != nil {
		t.Fatal(err)
	}
	if p.Protection == nil {
		t.Fatal("plan has no header protection")
	}
	return in, p, certs
}

// visibleTo is what a package's recipients may all see: To, Cc, From, and the package's own
// recipients (in a Group package of hidden recipients, every hidden recipient).
func visibleTo(pk *split.Package, mode split.BccMode) map[string]bool {
	v := map[string]bool{"alice@example.test": true, "bob@example.test": true, "carol@example.test": true}
	for _, r := range pk.Recipients {
		v[r] = true
	}
	if pk.Hidden && mode == split.Group {
		v["dave@example.test"], v["erin@example.test"] = true, true
	}
	return v
}

// TestHeaderProtection seals hpMessage with header protection in both profiles and both Bcc
// modes. For every package: openssl decrypts it as each of its recipients and verifies the
// signature over the protected header; the decrypted payload says hp="cipher" and carries the
// real Subject, while the outer header says "[...]"; every address of the protected header and
// of HP-Outer is in that package's visible set, and no hidden recipient of another package is
// named anywhere in what the package's recipients can read. The signed-only package carries
// hp="clear" and its outer header as before.
func TestHeaderProtection(t *testing.T) {
	r := setup(t)
	msg := []byte(hpMessage)
	for _, tc := range []struct {
		name    string
		profile string
		mode    split.BccMode
		keepBcc bool
	}{
		{"ok compat individual", "compat", split.Individual, true},
		{"ok modern individual", "modern", split.Individual, false},
		{"ok compat group", "compat", split.Group, true},
		{"ok modern group", "modern", split.Group, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, plan, certs := r.hpPlan(t, tc.profile, tc.mode, tc.keepBcc, msg)
			sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
			if err != nil {
				t.Fatal(err)
			}
			signedOnly := 0
			for _, p := range sealed.Packages {
				pkg := render(t, p)
				outerEnd := bytes.Index(pkg, []byte("\r\n\r\n"))
				outer := string(pkg[:outerEnd])
				vis := visibleTo(&p.Package, tc.mode)
				if p.Profile == "" {
					signedOnly++
					if !strings.Contains(outer, "Subject: the Jones contract") {
						t.Fatalf("signed-only package lost its Subject:\n%s", outer)
					}
					content, err := interop.OpenSSLVerify(t, r.env.PKI, pkg)
					if err != nil {
						t.Fatal(err)
					}
					checkProtected(t, content, smime.HPClear, vis, p.Recipients)
					continue
				}
				if !strings.Contains(outer, "\r\nSubject: [...]") || strings.Contains(outer, "Jones") || strings.Contains(outer, "jones") {
					t.Fatalf("outer header of %v is not obscured:\n%s", p.Recipients, outer)
				}
				for _, rcpt := range p.Recipients {
					inner, err := interop.OpenSSLDecrypt(t, r.env.PKI, r.byAddr[rcpt], pkg)
					if err != nil {
						t.Fatalf("openssl as %s: %v", rcpt, err)
					}
					for _, other := range []string{"dave", "erin"} {
						if !vis[other+"@example.test"] && bytes.Contains(bytes.ToLower(inner), []byte(other)) {
							t.Fatalf("package of %v names hidden recipient %s inside:\n%s", p.Recipients, other, inner)
						}
					}
					// inspect -key's software decryption reads what openssl reads.
					if own := openWithKey(t, r, r.byAddr[rcpt], pkg); !bytes.Equal(own, inner) {
						t.Fatalf("OpenWithKey as %s differs from openssl", rcpt)
					}
					content, err := interop.OpenSSLVerify(t, r.env.PKI, inner)
					if err != nil {
						t.Fatalf("signature over the protected header does not verify for %s: %v", rcpt, err)
					}
					checkProtected(t, content, smime.HPCipher, vis, p.Recipients)
				}
				if tc.profile == "compat" { // gpgsm and NSS read the compat profile (README)
					for _, d := range []decoder{gpgsm, nss} {
						who := r.byAddr[p.Recipients[0]]
						inner, err := d.decrypt(t, r.env.PKI, who, pkg)
						if err != nil {
							t.Fatalf("%s as %s: %v", d.name, who, err)
						}
						if _, err := d.verify(t, r.env.PKI, inner); err != nil {
							t.Fatalf("%s verify as %s: %v", d.name, who, err)
						}
					}
				}
			}
			if signedOnly != 1 {
				t.Fatalf("%d signed-only packages, want 1 (frank)", signedOnly)
			}
		})
	}
}

// checkProtected reads the verified payload: its hp mode, the real Subject, and every address
// of the protected header and of HP-Outer inside the package's visible set; never a Bcc field.
func checkProtected(t *testing.T, content []byte, mode string, vis map[string]bool, rcpts []string) {
	t.Helper()
	p, err := smime.ReadProtected(smime.Canonicalize(content))
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != mode {
		t.Fatalf("package of %v: hp=%q, want %q", rcpts, p.Mode, mode)
	}
	if got := p.Header.Get("Subject"); got != "the Jones contract" {
		t.Fatalf("package of %v: protected Subject %q", rcpts, got)
	}
	if p.Header.Has("Bcc") || p.Header.Has("Keywords") != true {
		t.Fatalf("package of %v: protected header Bcc %v, Keywords %v", rcpts, p.Header.Has("Bcc"), p.Header.Has("Keywords"))
	}
	if mode == smime.HPCipher {
		if !slices.Contains(p.Outer, "Subject: [...]") || !p.Legacy || !bytes.Contains(content, []byte("Subject: the Jones contract\r\n\r\nTerms inside.")) {
			t.Fatalf("package of %v: HP-Outer %q, legacy display %v", rcpts, p.Outer, p.Legacy)
		}
	} else if len(p.Outer) != 0 || p.Legacy {
		t.Fatalf("signed-only package has HP-Outer %q or a legacy display", p.Outer)
	}
	var fields []string
	for f := p.Header.Fields(); f.Next(); {
		fields = append(fields, f.Key()+": "+f.Value())
	}
	for _, line := range append(fields, p.Outer...) {
		k, v, _ := strings.Cut(line, ": ")
		if !slices.Contains([]string{"From", "To", "Cc", "Reply-To", "Sender"}, k) {
			if strings.Contains(v, "@example.test") && k != "Message-Id" {
				t.Fatalf("package of %v: %s names an address: %q", rcpts, k, v)
			}
			continue
		}
		list, err := mail.ParseAddressList(v)
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		for _, a := range list {
			if !vis[a.Address] {
				t.Fatalf("package of %v: protected %s names %s, outside its visible set", rcpts, k, a.Address)
			}
		}
	}
}

// TestHeaderProtectionOff: without the policy, no package carries an hp parameter, HP-Outer or
// an obscured Subject.
func TestHeaderProtectionOff(t *testing.T) {
	r := setup(t)
	msg := []byte(hpMessage)
	in, _, certs := r.hpPlan(t, "compat", split.Individual, false, msg)
	in.Policy.HeaderProtection = split.HeaderProtection{}
	plan, err := split.Make(in)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range sealed.Packages {
		pkg := render(t, p)
		if !bytes.Contains(pkg, []byte("Subject: the Jones contract")) {
			t.Fatalf("outer Subject changed without header protection")
		}
		if p.Profile == "" {
			continue
		}
		inner, err := interop.OpenSSLDecrypt(t, r.env.PKI, r.byAddr[p.Recipients[0]], pkg)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(inner, []byte("hp=")) || bytes.Contains(inner, []byte("HP-Outer")) || bytes.Contains(inner, []byte("Subject:")) {
			t.Fatalf("payload changed without header protection:\n%s", inner)
		}
	}
}

func openWithKey(t *testing.T, r *rig, name string, pkg []byte) []byte {
	t.Helper()
	b, err := os.ReadFile(r.env.File(name + ".key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("no PEM in %s.key", name)
	}
	var key *rsa.PrivateKey
	if k, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err == nil {
		key, _ = k.(*rsa.PrivateKey)
	} else if key, err = x509.ParsePKCS1PrivateKey(blk.Bytes); err != nil {
		t.Fatal(err)
	}
	out, err := smime.OpenWithKey(pkg, r.env.Cert(t, name), key)
	if err != nil {
		t.Fatalf("OpenWithKey as %s: %v", name, err)
	}
	if _, err := smime.OpenWithKey(pkg, r.env.Cert(t, "grace"), key); err == nil {
		t.Fatal("OpenWithKey opened a package for a certificate with no RecipientInfo in it")
	}
	return out
}

// BenchmarkSealHeaderProtection: what header protection adds to sealing a 1 MB message for
// To, Cc and two Bcc recipients (and a signed-only one, whose hp="clear" payload is a second
// signature): the payload is built once and the message is still signed once for every
// encrypted package.
func BenchmarkSealHeaderProtection(b *testing.B) {
	r := setup(b)
	msg := []byte(strings.Replace(hpMessage, "Terms inside.\r\n", strings.Repeat("Terms inside, at length.\r\n", 1<<20/26), 1))
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("protection=%v", on), func(b *testing.B) {
			in, _, certs := r.hpPlan(b, "compat", split.Individual, false, msg)
			if !on {
				in.Policy.HeaderProtection = split.HeaderProtection{}
			}
			plan, err := split.Make(in)
			if err != nil {
				b.Fatal(err)
			}
			s := r.sealer()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if _, err := s.Seal(context.Background(), msg, plan, r.sender, certs); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
