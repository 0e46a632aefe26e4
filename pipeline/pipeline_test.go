package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/hsmkeys"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/split"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if strangerDir != "" {
		os.RemoveAll(strangerDir)
	}
	interop.Cleanup()
	softhsmtest.Cleanup()
	os.Exit(code)
}

// token is the pipeline's token on the real SoftHSM2 token.
type token = hsmkeys.Token

var sharedToken *hsm.Token

func newPipeline(t *testing.T, pol split.Policy, ski func(string) bool) (*pipeline.Pipeline, *softhsmtest.Env) {
	t.Helper()
	return pipelineWith(t, pol, func(o *pipeline.Options) { o.SKI = ski })
}

// pipelineWith is the pipeline of the tests (the shared token, the test PKI's directory, alice as
// the sender) with the options set changes.
func pipelineWith(t *testing.T, pol split.Policy, set ...func(*pipeline.Options)) (*pipeline.Pipeline, *softhsmtest.Env) {
	t.Helper()
	env := softhsmtest.Setup(t)
	if sharedToken == nil {
		tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4})
		if err != nil {
			t.Fatal(err)
		}
		sharedToken = tok
	}
	dir, err := directory.Open(directory.Options{CertsDir: env.File("certs"), RootsFile: env.File("roots.pem")})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	o := pipeline.Options{
		Directory: dir,
		Token:     token{Token: sharedToken},
		Senders:   []pipeline.Sender{{Address: "alice@example.test", KeyURI: "pkcs11:token=appliance;object=alice", Chain: chain}},
		Policy:    pol,
		Hostname:  "relay.example.test",
	}
	for _, f := range set {
		f(&o)
	}
	p, err := pipeline.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p, env
}

const msg = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: carol@example.test\r\n" +
	"Subject: test\r\nMessage-ID: <p@example.test>\r\n\r\nbody line\r\n"

func process(t *testing.T, p *pipeline.Pipeline, rcpts ...string) *queue.Sealed {
	t.Helper()
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcpts, Helo: "client.example.test", ClientAddr: "127.0.0.1:4000", ReceivedAt: time.Now()}
	s, err := p.Process(context.Background(), "T1", env, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func render(t *testing.T, pk queue.Package) []byte {
	t.Helper()
	var b bytes.Buffer
	if _, err := pk.Body.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestProcess(t *testing.T) {
	t.Run("ok to cc and two hidden", func(t *testing.T) {
		p, env := newPipeline(t, split.Policy{SelfCopy: true}, nil)
		s := process(t, p, "bob@example.test", "carol@example.test", "dave@example.test", "erin@example.test")
		if len(s.Packages) != 3 || len(s.Refused) != 0 {
			t.Fatalf("got %d packages, %d refused; want 3, 0", len(s.Packages), len(s.Refused))
		}
		for _, pk := range s.Packages {
			if pk.Mode != seal.ModeEncrypted || pk.Profile != seal.ProfileCompat {
				t.Fatalf("package for %v records %s/%s, want encrypted/compat", pk.RcptTo, pk.Mode, pk.Profile)
			}
			data := render(t, pk)
			if !bytes.HasPrefix(data, []byte("Received: from client.example.test")) {
				t.Fatalf("package lacks its Received field:\n%.200s", data)
			}
			for _, r := range pk.RcptTo {
				name := strings.TrimSuffix(r, "@example.test")
				if _, err := interop.OpenSSLDecrypt(t, env.PKI, name, data); err != nil {
					t.Fatalf("%s cannot decrypt their package: %v", name, err)
				}
			}
			if len(pk.RcptTo) == 1 && (bytes.Contains(data, []byte("bob@example.test>")) || strings.Contains(string(data), "for <bob")) {
				t.Fatal("a hidden package names bob in a Received for clause")
			}
		}
	})

	t.Run("ok missing cert plaintext", func(t *testing.T) {
		p, env := newPipeline(t, split.Policy{SelfCopy: true, MissingCert: split.Plaintext}, nil)
		s := process(t, p, "bob@example.test", "nocert@example.test")
		var plain []byte
		for _, pk := range s.Packages {
			if len(pk.RcptTo) == 1 && pk.RcptTo[0] == "nocert@example.test" {
				if pk.Mode != seal.ModeSigned || pk.Profile != seal.ProfileNone {
					t.Fatalf("signed-only package records %s/%s", pk.Mode, pk.Profile)
				}
				plain = render(t, pk)
			}
		}
		if plain == nil {
			t.Fatal("no package of its own for the recipient without a certificate")
		}
		if bytes.Contains(plain, []byte("application/pkcs7-mime")) {
			t.Fatal("plaintext package is encrypted")
		}
		if _, err := interop.OpenSSLVerify(t, env.PKI, plain); err != nil {
			t.Fatalf("signed-only package does not verify: %v", err)
		}
	})

	t.Run("ok missing cert drop", func(t *testing.T) {
		p, _ := newPipeline(t, split.Policy{SelfCopy: true, MissingCert: split.Drop}, nil)
		s := process(t, p, "bob@example.test", "nocert@example.test")
		if len(s.Refused) != 1 || s.Refused[0].Recipient != "nocert@example.test" || s.Refused[0].Status != "5.7.1" {
			t.Fatalf("refused = %+v", s.Refused)
		}
		if strings.Contains(s.Refused[0].Reason, "bob") {
			t.Fatal("the refusal names another recipient")
		}
	})

	t.Run("fail missing cert reject at rcpt", func(t *testing.T) {
		p, _ := newPipeline(t, split.Policy{SelfCopy: true}, nil)
		if err := p.CheckRecipient(context.Background(), "nocert@example.test"); !errors.Is(err, pipeline.ErrNoCertificate) {
			t.Fatalf("CheckRecipient = %v, want ErrNoCertificate", err)
		}
		if err := p.CheckRecipient(context.Background(), "bob@example.test"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("fail unknown sender", func(t *testing.T) {
		p, _ := newPipeline(t, split.Policy{}, nil)
		if err := p.CheckSender(context.Background(), "mallory@example.test"); !errors.Is(err, pipeline.ErrUnknownSender) {
			t.Fatalf("CheckSender = %v", err)
		}
		env := queue.Envelope{MailFrom: "mallory@example.test", RcptTo: []string{"bob@example.test"}}
		if _, err := p.Process(context.Background(), "T2", env, strings.NewReader(msg)); !errors.Is(err, pipeline.ErrUnknownSender) {
			t.Fatalf("Process = %v", err)
		}
	})

	t.Run("ok ski ids by policy", func(t *testing.T) {
		p, env := newPipeline(t, split.Policy{SelfCopy: true}, func(owner string) bool { return strings.HasSuffix(owner, "@example.org") })
		// Every RecipientInfo is matched to the certificate it names: by subject key identifier
		// for the owners the policy picks (olivia@example.org), by issuer and serial for the
		// rest (bob, and alice's self-copy).
		type certID struct {
			owner string
			ski   []byte
			sn    string
		}
		var certs []certID
		for _, name := range []string{"alice", "bob", "olivia"} {
			c := env.Cert(t, name)
			certs = append(certs, certID{name, c.SubjectKeyId, c.SerialNumber.String()})
		}
		s := process(t, p, "bob@example.test", "olivia@example.org")
		seen := map[string]int{}
		for _, pk := range s.Packages {
			sub, err := p.Seal(context.Background(), "T3", queue.Envelope{MailFrom: "alice@example.test", RcptTo: pk.RcptTo}, []byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			env, err := cms.ParseEnveloped(sub.Sealed.Packages[0].CMS().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			for _, ri := range env.RecipientInfos {
				owner := ""
				for _, c := range certs {
					if ri.SubjectKeyID != nil && bytes.Equal(ri.SubjectKeyID, c.ski) ||
						ri.Serial != nil && ri.Serial.String() == c.sn {
						owner = c.owner
					}
				}
				wantSKI := owner == "olivia"
				switch {
				case owner == "":
					t.Fatalf("package for %v: RecipientInfo names no known certificate (ski %x, serial %v)", pk.RcptTo, ri.SubjectKeyID, ri.Serial)
				case wantSKI && (ri.SubjectKeyID == nil || ri.Serial != nil || ri.Version != 2):
					t.Fatalf("package for %v: %s's RecipientInfo is not by subject key identifier (version %d, serial %v)", pk.RcptTo, owner, ri.Version, ri.Serial)
				case !wantSKI && (ri.SubjectKeyID != nil || ri.Serial == nil || ri.Version != 0):
					t.Fatalf("package for %v: %s's RecipientInfo is not by issuer and serial (version %d, ski %x)", pk.RcptTo, owner, ri.Version, ri.SubjectKeyID)
				}
				seen[owner]++
			}
		}
		if seen["olivia"] == 0 || seen["bob"] == 0 || seen["alice"] == 0 {
			t.Fatalf("RecipientInfos per owner %v: want bob, olivia and alice each", seen)
		}
	})
}

// TestUnusableCertificates: certificates without keyEncipherment or expired are refused
// before any wrap, and the reason names the certificate.
func TestUnusableCertificates(t *testing.T) {
	p, _ := newPipeline(t, split.Policy{SelfCopy: true, MissingCert: split.Drop}, nil)
	for _, tc := range []struct{ rcpt, cn, why string }{
		{"ivan@example.test", "CN=ivan", "keyEncipherment"},
		{"grace@example.test", "CN=grace", "expired"},
	} {
		t.Run("fail "+tc.rcpt, func(t *testing.T) {
			res, err := p.Seal(context.Background(), "T4", queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{tc.rcpt}}, []byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sealed.Packages) != 0 || len(res.Plan.Refused) != 1 {
				t.Fatalf("got %d packages and %d refusals, want 0 and 1", len(res.Sealed.Packages), len(res.Plan.Refused))
			}
			if len(res.Unusable) != 1 {
				t.Fatalf("unusable = %v", res.Unusable)
			}
			got := res.Unusable[0].Err.Error()
			if !strings.Contains(got, tc.cn) || !strings.Contains(strings.ToLower(got), strings.ToLower(tc.why)) {
				t.Fatalf("error %q does not name %s and %q", got, tc.cn, tc.why)
			}
		})
	}
}

// TestReceivedField: the Received field on each package names the client as it said HELO (or
// "unknown") and its address when known, with nothing that could break the field, and WriteTo
// counts every byte it wrote.
func TestReceivedField(t *testing.T) {
	p, _ := newPipeline(t, split.Policy{SelfCopy: true}, nil)
	for _, tc := range []struct{ name, helo, addr, want string }{
		{"ok helo and address", "client.example.test", "192.0.2.1:4000",
			"Received: from client.example.test (192.0.2.1:4000)\r\n\tby relay.example.test (appliance) with ESMTP id T5\r\n\tfor <bob@example.test>;"},
		{"ok no helo, no address", "", "", "Received: from unknown\r\n\tby relay.example.test (appliance)"},
		{"ok printable edges kept, the rest replaced", "!a~ (b);", "", "Received: from !a~__b__\r\n\tby "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test"}, Helo: tc.helo, ClientAddr: tc.addr, ReceivedAt: time.Now()}
			s, err := p.Process(context.Background(), "T5", env, strings.NewReader(msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Packages) != 1 {
				t.Fatalf("%d packages, want 1", len(s.Packages))
			}
			var b bytes.Buffer
			n, err := s.Packages[0].Body.WriteTo(&b)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(b.Len()) {
				t.Fatalf("WriteTo reported %d bytes, wrote %d", n, b.Len())
			}
			if !bytes.HasPrefix(b.Bytes(), []byte(tc.want)) {
				t.Fatalf("package starts\n%q\nwant\n%q", b.Bytes()[:min(b.Len(), len(tc.want)+40)], tc.want)
			}
		})
	}
}
