package seal_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"appliance/cms"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/hsmkeys"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

func TestMain(m *testing.M) {
	code := m.Run()
	interop.Cleanup()
	softhsmtest.Cleanup()
	os.Exit(code)
}

// rig is a token, the test PKI and a sealer built on them, shared by the tests of this file.
type rig struct {
	env    *softhsmtest.Env
	tok    *hsm.Token
	sender seal.Sender
	users  map[string]string // name -> address
	byAddr map[string]string // address -> name (first certificate's name)
}

var (
	rigOnce sync.Once
	theRig  *rig
	rigErr  error
)

func setup(t testing.TB) *rig {
	t.Helper()
	env := softhsmtest.Setup(t)
	rigOnce.Do(func() {
		tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 8})
		if err != nil {
			rigErr = err
			return
		}
		signer, err := tok.Signer(context.Background(), "pkcs11:token=appliance;object=alice")
		if err != nil {
			rigErr = err
			return
		}
		chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
		if err != nil {
			rigErr = err
			return
		}
		theRig = &rig{env: env, tok: tok, sender: seal.Sender{Signer: signer, Chain: chain}, byAddr: map[string]string{}}
	})
	if rigErr != nil {
		t.Fatalf("setup: %v", rigErr)
	}
	if theRig.users == nil {
		theRig.users = env.Users(t)
		for name, addr := range theRig.users {
			if _, ok := theRig.byAddr[addr]; !ok || name < theRig.byAddr[addr] {
				theRig.byAddr[addr] = name
			}
		}
	}
	return theRig
}

func (r *rig) sealer() *seal.Sealer {
	return &seal.Sealer{
		NewKey:   hsmkeys.Token{Token: r.tok}.NewContentKey,
		OAEPHash: r.tok.OAEPHash,
	}
}

// plan builds a plan with split for a message and envelope, every recipient getting the
// certificate of the same name in the test PKI, all in one profile.
func (r *rig) plan(t testing.TB, msg []byte, rcpts []string, profile string, bcc split.BccMode) (*split.Plan, map[string]*x509.Certificate) {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*x509.Certificate{}
	in := split.Input{Header: h, MailFrom: "alice@example.test", RcptTo: rcpts, Certs: map[string][]split.Cert{},
		Policy: split.Policy{Bcc: bcc, SelfCopy: true, Profile: profile}}
	add := func(name string) split.Cert {
		c := r.env.Cert(t, name)
		id := directory.CertID(c)
		certs[id] = c
		return split.Cert{ID: id, Owner: r.users[name], NotBefore: c.NotBefore}
	}
	for _, a := range rcpts {
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
	return p, certs
}

func message(to []string, body string) []byte {
	return []byte("From: Alice <alice@example.test>\r\nTo: " + strings.Join(to, ", ") +
		"\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nDate: Sat, 28 Nov 2026 15:00:00 +0000\r\n" +
		"Message-ID: <t@example.test>\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\n" + body)
}

func render(t testing.TB, p *seal.Package) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := p.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type decoder struct {
	name    string
	decrypt func(testing.TB, string, string, []byte) ([]byte, error)
	verify  func(testing.TB, string, []byte) ([]byte, error)
}

var (
	openssl = decoder{"openssl", interop.OpenSSLDecrypt, interop.OpenSSLVerify}
	gpgsm   = decoder{"gpgsm", interop.GpgsmDecrypt, interop.GpgsmVerify}
	nss     = decoder{"cmsutil", interop.CmsutilDecrypt, interop.CmsutilVerify}
)

// TestDecoders seals for 1, 2 and 25 recipients in both profiles and both identifier kinds,
// and has every decoder that can read the combination decrypt it as every recipient and verify
// the signature. Which decoder reads which combination was measured (README, "Profiles and who can read them").
func TestDecoders(t *testing.T) {
	r := setup(t)
	body := "Grüße aus dem Rechenzentrum.\r\n"
	cases := []struct {
		name     string
		profile  string
		ski      bool
		n        int
		decoders []decoder
	}{
		{"ok compat issuer-serial 1", "compat", false, 1, []decoder{openssl, gpgsm, nss}},
		{"ok compat issuer-serial 2", "compat", false, 2, []decoder{openssl, gpgsm, nss}},
		{"ok compat issuer-serial 25", "compat", false, 25, []decoder{openssl}},
		{"ok compat ski 2", "compat", true, 2, []decoder{openssl, nss}},
		{"ok modern issuer-serial 1", "modern", false, 1, []decoder{openssl}},
		{"ok modern issuer-serial 2", "modern", false, 2, []decoder{openssl}},
		{"ok modern issuer-serial 25", "modern", false, 25, []decoder{openssl}},
		{"ok modern ski 2", "modern", true, 2, []decoder{openssl}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var rcpts []string
			for i := 1; i <= tc.n; i++ {
				rcpts = append(rcpts, fmt.Sprintf("u%02d@example.test", i))
			}
			msg := message(rcpts, body)
			plan, certs := r.plan(t, msg, rcpts, tc.profile, split.Individual)
			s := r.sealer()
			if tc.ski {
				s.SKI = func(string) bool { return true }
			}
			sealed, err := s.Seal(context.Background(), msg, plan, r.sender, certs)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed.Packages) != 1 {
				t.Fatalf("want one package for To recipients, got %d", len(sealed.Packages))
			}
			// Every RecipientInfo, the self-copy's too, uses the identifier the policy asked for.
			env, err := cms.ParseEnveloped(sealed.Packages[0].CMS().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if len(env.RecipientInfos) != tc.n+1 {
				t.Fatalf("%d RecipientInfos, want %d (recipients + self-copy)", len(env.RecipientInfos), tc.n+1)
			}
			for i, ri := range env.RecipientInfos {
				if got := ri.SubjectKeyID != nil && ri.Serial == nil && ri.Version == 2; got != tc.ski {
					t.Fatalf("RecipientInfo %d: subject key identifier %x, serial %v, version %d; want ski %v", i, ri.SubjectKeyID, ri.Serial, ri.Version, tc.ski)
				}
				if !tc.ski && (ri.Serial == nil || ri.Version != 0) {
					t.Fatalf("RecipientInfo %d: serial %v, version %d; want issuer and serial", i, ri.Serial, ri.Version)
				}
			}
			pkg := render(t, sealed.Packages[0])
			want := smimeType(tc.profile)
			if !bytes.Contains(pkg, []byte("smime-type="+want)) {
				t.Fatalf("package is not %s", want)
			}
			// The last recipient, the first, and the sender's self-copy.
			readers := []string{"alice", r.byAddr[rcpts[0]], r.byAddr[rcpts[len(rcpts)-1]]}
			for _, d := range tc.decoders {
				for _, who := range readers {
					inner, err := d.decrypt(t, r.env.PKI, who, pkg)
					if err != nil {
						t.Fatalf("%s as %s: %v", d.name, who, err)
					}
					content, err := d.verify(t, r.env.PKI, inner)
					if err != nil {
						t.Fatalf("%s verify as %s: %v", d.name, who, err)
					}
					if !bytes.Contains(smime.Canonicalize(content), []byte(body)) {
						t.Fatalf("%s as %s: signed body differs:\n%q", d.name, who, content)
					}
				}
			}
			if tc.n == 25 {
				for _, who := range rcpts {
					if _, err := interop.OpenSSLDecrypt(t, r.env.PKI, r.byAddr[who], pkg); err != nil {
						t.Fatalf("openssl as %s: %v", who, err)
					}
				}
			}
		})
	}
}

func smimeType(profile string) string {
	if profile == "modern" {
		return smime.TypeAuthEnvelopedData
	}
	return smime.TypeEnvelopedData
}

// TestSharedContent: a To package and a Bcc package from one encryption; each decrypts only for
// its own recipients (and the sender), and their encryptedContent bytes are identical.
func TestSharedContent(t *testing.T) {
	r := setup(t)
	for _, profile := range []string{"compat", "modern"} {
		t.Run("ok "+profile, func(t *testing.T) {
			msg := message([]string{"bob@example.test"}, "one encryption, two packages\r\n")
			rcpts := []string{"bob@example.test", "dave@example.test"} // dave is Bcc (envelope only)
			plan, certs := r.plan(t, msg, rcpts, profile, split.Individual)
			sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
			if err != nil {
				t.Fatal(err)
			}
			if len(sealed.Packages) != 2 {
				t.Fatalf("want 2 packages, got %d", len(sealed.Packages))
			}
			var contents [][]byte
			for _, p := range sealed.Packages {
				env, err := cms.ParseEnveloped(p.CMS().Bytes())
				if err != nil {
					t.Fatal(err)
				}
				ct, err := env.EncryptedContent()
				if err != nil {
					t.Fatal(err)
				}
				contents = append(contents, ct)
				if len(env.RecipientInfos) != 2 {
					t.Fatalf("package for %v has %d RecipientInfos, want 2 (recipient + self-copy)", p.Recipients, len(env.RecipientInfos))
				}
			}
			if !bytes.Equal(contents[0], contents[1]) {
				t.Fatal("encryptedContent differs between packages of one message")
			}
			toPkg, bccPkg := render(t, sealed.Packages[0]), render(t, sealed.Packages[1])
			if sealed.Packages[0].Hidden {
				toPkg, bccPkg = bccPkg, toPkg
			}
			mustDecrypt(t, r, "bob", toPkg)
			mustDecrypt(t, r, "alice", toPkg)
			mustNotDecrypt(t, r, "dave", toPkg)
			mustDecrypt(t, r, "dave", bccPkg)
			mustDecrypt(t, r, "alice", bccPkg)
			mustNotDecrypt(t, r, "bob", bccPkg)
			if bytes.Contains(toPkg, []byte("dave")) {
				t.Fatal("the To package names the Bcc recipient")
			}
		})
	}
}

func mustDecrypt(t *testing.T, r *rig, who string, pkg []byte) {
	t.Helper()
	if _, err := interop.OpenSSLDecrypt(t, r.env.PKI, who, pkg); err != nil {
		t.Fatalf("%s cannot decrypt: %v", who, err)
	}
}

func mustNotDecrypt(t *testing.T, r *rig, who string, pkg []byte) {
	t.Helper()
	if _, err := interop.OpenSSLDecrypt(t, r.env.PKI, who, pkg); err == nil {
		t.Fatalf("%s, not a recipient, decrypted the package", who)
	}
}

// TestTamper: a flipped ciphertext byte fails GCM authentication, and a changed signed body
// fails signature verification.
func TestTamper(t *testing.T) {
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "do not change me\r\n")
	rcpts := []string{"bob@example.test"}

	t.Run("fail flipped gcm ciphertext", func(t *testing.T) {
		plan, certs := r.plan(t, msg, rcpts, "modern", split.Individual)
		sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
		if err != nil {
			t.Fatal(err)
		}
		der := sealed.Packages[0].CMS().Bytes()
		env, err := cms.ParseEnveloped(der)
		if err != nil {
			t.Fatal(err)
		}
		ct, _ := env.EncryptedContent()
		i := bytes.Index(der, ct)
		if i < 0 {
			t.Fatal("ciphertext not found in DER")
		}
		bad := bytes.Clone(der)
		bad[i+len(ct)/2] ^= 1
		if _, err := interop.OpenSSLDecrypt(t, r.env.PKI, "bob", der); err != nil {
			t.Fatalf("untouched package: %v", err)
		}
		if _, err := interop.OpenSSLDecrypt(t, r.env.PKI, "bob", bad); err == nil {
			t.Fatal("a flipped ciphertext byte decrypted without an authentication failure")
		}
	})

	t.Run("fail changed signed body", func(t *testing.T) {
		plan, certs := r.plan(t, msg, rcpts, "compat", split.Individual)
		sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
		if err != nil {
			t.Fatal(err)
		}
		inner, err := interop.OpenSSLDecrypt(t, r.env.PKI, "bob", render(t, sealed.Packages[0]))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := interop.OpenSSLVerify(t, r.env.PKI, inner); err != nil {
			t.Fatalf("untouched: %v", err)
		}
		bad := bytes.Replace(inner, []byte("do not change me"), []byte("do not change mE"), 1)
		if _, err := interop.OpenSSLVerify(t, r.env.PKI, bad); err == nil {
			t.Fatal("a changed body verified")
		}
	})
}

// TestUnknownCert: a plan naming a certificate the caller did not give fails before any wrap.
func TestUnknownCert(t *testing.T) {
	r := setup(t)
	msg := message([]string{"bob@example.test"}, "x\r\n")
	plan, certs := r.plan(t, msg, []string{"bob@example.test"}, "compat", split.Individual)
	for id := range certs {
		if certs[id].EmailAddresses[0] == "bob@example.test" {
			delete(certs, id)
		}
	}
	if _, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs); err == nil {
		t.Fatal("sealed for a certificate it was not given")
	}
}

// TestSplitBody: a package's head followed by its shared part is exactly what WriteTo writes;
// packages of one profile whose own DER has one length share one part (the same pointer), and
// the part is most of the package.
func TestSplitBody(t *testing.T) {
	r := setup(t)
	for _, profile := range []string{"compat", "modern"} {
		t.Run(profile, func(t *testing.T) {
			msg := message([]string{"bob@example.test"}, strings.Repeat("the shared content\r\n", 3000))
			rcpts := []string{"bob@example.test", "dave@example.test", "erin@example.test"}
			plan, certs := r.plan(t, msg, rcpts, profile, split.Individual)
			sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
			if err != nil {
				t.Fatal(err)
			}
			parts := map[any]int{}
			for i, p := range sealed.Packages {
				head, shared := p.SplitBody()
				if shared == nil {
					t.Fatalf("package %d shares nothing", i)
				}
				var b bytes.Buffer
				if _, err := head.WriteTo(&b); err != nil {
					t.Fatal(err)
				}
				headLen := b.Len()
				if _, err := shared.WriteTo(&b); err != nil {
					t.Fatal(err)
				}
				if whole := render(t, p); !bytes.Equal(b.Bytes(), whole) {
					t.Fatalf("package %d: head + shared part (%d bytes) differ from WriteTo (%d bytes)", i, b.Len(), len(whole))
				}
				if headLen*10 > b.Len() {
					t.Errorf("package %d: head of %d bytes in a package of %d", i, headLen, b.Len())
				}
				parts[shared]++
			}
			if len(parts) >= len(sealed.Packages) {
				t.Errorf("%d packages have %d different shared parts", len(sealed.Packages), len(parts))
			}
		})
	}
}
