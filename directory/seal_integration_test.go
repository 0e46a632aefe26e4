package directory_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/directory"
	"appliance/hsm"
	"appliance/internal/hsmkeys"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/pipeline"
	"appliance/queue"
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

// token is the pipeline's token on the real SoftHSM2 token.
type token = hsmkeys.Token

// TestSealWithLDAP seals on the SoftHSM token with LDAP as the only
// certificate source: recipients found in slapd get packages OpenSSL
// decrypts, a certificate revoked by a CRL from its distribution point
// (served here over HTTP) is refused, and a correspondent whose signed
// message was learnt gets the modern profile.
func TestSealWithLDAP(t *testing.T) {
	env := softhsmtest.Setup(t)
	sl := directory.StartTestSlapd(t)
	ctx := context.Background()

	inter, interKey := env.Cert(t, "inter"), env.Key(t, "inter")
	var crl []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(crl) }))
	t.Cleanup(srv.Close)
	now := time.Now()
	rev := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "rev", Organization: []string{"Example"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses:        []string{"rev@example.test"},
		CRLDistributionPoints: []string{srv.URL + "/inter.crl"},
	}
	revDER, err := x509.CreateCertificate(rand.Reader, rev, inter, env.Cert(t, "bob").PublicKey, interKey)
	if err != nil {
		t.Fatal(err)
	}
	revCert, _ := x509.ParseCertificate(revDER)
	crl, err = x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: now.Add(-time.Hour), NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revCert.SerialNumber, RevocationTime: now.Add(-time.Minute)}},
	}, inter, interKey)
	if err != nil {
		t.Fatal(err)
	}

	sl.AddPerson("bob", "bob@example.test", env.Cert(t, "bob"))
	sl.AddPerson("carol", "carol@example.test", env.Cert(t, "carol"))
	sl.AddPerson("rev", "rev@example.test", revCert)
	sl.AddPerson("olivia", "olivia@example.org", env.Cert(t, "olivia"))

	dir, err := directory.Open(directory.Options{
		CertsDir:  t.TempDir(), // empty: LDAP is the only place certificates come from
		RootsFile: env.File("roots.pem"),
		Sources:   []string{directory.SourceLDAP},
		LDAP: &directory.LDAPOptions{URL: sl.URL(), BaseDN: directory.TestSlapdPeople,
			BindDN: directory.TestSlapdAdmin, BindPassword: directory.TestSlapdPW},
		CRLFetch: &directory.CRLFetchOptions{URLPrefixes: []string{srv.URL + "/"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := pipeline.New(pipeline.Options{
		Directory: dir,
		Token:     token{Token: tok},
		Senders:   []pipeline.Sender{{Address: "alice@example.test", KeyURI: "pkcs11:token=appliance;object=alice", Chain: chain}},
		Policy:    split.Policy{SelfCopy: true},
		Hostname:  "relay.example.test",
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok LDAP recipients sealed, revoked one refused", func(t *testing.T) {
		msg := "From: alice@example.test\r\nTo: bob@example.test\r\nCc: carol@example.test\r\nSubject: ldap\r\n\r\nvia ldap\r\n"
		e := queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test", "carol@example.test", "rev@example.test"}, ReceivedAt: now}
		s, err := p.Process(ctx, "L1", e, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Refused) != 1 || s.Refused[0].Recipient != "rev@example.test" {
			t.Fatalf("refused = %+v, want rev only", s.Refused)
		}
		if len(s.Packages) != 1 {
			t.Fatalf("%d packages, want 1", len(s.Packages))
		}
		var b bytes.Buffer
		if _, err := s.Packages[0].Body.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		for _, user := range []string{"bob", "carol"} {
			out, err := interop.OpenSSLDecrypt(t, env.PKI, user, b.Bytes())
			if err != nil || !bytes.Contains(out, []byte("via ldap")) {
				t.Fatalf("%s: %v", user, err)
			}
		}
		_, rejected, _ := dir.LookupContext(ctx, "rev@example.test")
		if len(rejected) != 1 || !strings.Contains(rejected[0].Err.Error(), "revoked") {
			t.Errorf("rev rejected = %v", rejected)
		}
	})

	t.Run("ok learnt AES-256-GCM makes the next message modern", func(t *testing.T) {
		olivia := env.Cert(t, "olivia")
		entity := "Content-Type: text/plain\r\n\r\nI read GCM\r\n"
		sig, err := cms.Sign(env.Key(t, "olivia"), []*x509.Certificate{olivia, inter}, []byte(entity), cms.SignOptions{
			Detached:     true,
			Capabilities: []cms.AlgorithmIdentifier{{Algorithm: oid.AES256GCM}, {Algorithm: oid.AES256CBC}},
		})
		if err != nil {
			t.Fatal(err)
		}
		signed := append([]byte("From: olivia@example.org\r\nTo: alice@example.test\r\nMIME-Version: 1.0\r\n"),
			smime.SignedEntity([]byte(entity), sig, "sha-256")...)

		before, _, err := dir.LookupContext(ctx, "olivia@example.org")
		if err != nil || len(before) != 1 || before[0].Profile != "" {
			t.Fatalf("before learning: %+v %v", before, err)
		}
		if _, err := dir.Learn(signed); err != nil {
			t.Fatal(err)
		}
		valid, _, err := dir.LookupContext(ctx, "olivia@example.org")
		if err != nil || len(valid) != 1 || valid[0].Profile != directory.ProfileModern || valid[0].Source != directory.SourceLDAP {
			t.Fatalf("after learning: %+v %v", valid, err)
		}

		// What the pipeline does once it maps Entry.Profile to split.Cert.Profile.
		msg := []byte("From: alice@example.test\r\nTo: olivia@example.org\r\nSubject: modern\r\n\r\nsealed with GCM\r\n")
		h, err := textproto.ReadHeader(bufioReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		e := valid[0]
		plan, err := split.Make(split.Input{
			Header: h, MailFrom: "alice@example.test", RcptTo: []string{"olivia@example.org"},
			Certs:  map[string][]split.Cert{"olivia@example.org": {{ID: e.ID, Owner: "olivia@example.org", Profile: e.Profile, NotBefore: e.Cert.NotBefore}}},
			Policy: split.Policy{Profile: split.ProfileCompat},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Profiles) != 1 || plan.Profiles[0] != directory.ProfileModern {
			t.Fatalf("plan profiles %q, want modern", plan.Profiles)
		}
		signer, err := tok.Signer(ctx, "pkcs11:token=appliance;object=alice")
		if err != nil {
			t.Fatal(err)
		}
		sealer := &seal.Sealer{NewKey: token{Token: tok}.NewContentKey, OAEPHash: tok.OAEPHash}
		sealed, err := sealer.Seal(ctx, msg, plan, seal.Sender{Signer: signer, Chain: chain}, map[string]*x509.Certificate{e.ID: e.Cert})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := sealed.Packages[0].WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(b.Bytes(), []byte("smime-type="+smime.TypeAuthEnvelopedData)) {
			t.Fatalf("not AuthEnvelopedData:\n%.400s", b.Bytes())
		}
		out, err := interop.OpenSSLDecrypt(t, env.PKI, "olivia", b.Bytes())
		if err != nil || !bytes.Contains(out, []byte("sealed with GCM")) {
			t.Fatalf("openssl: %v", err)
		}
	})
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
