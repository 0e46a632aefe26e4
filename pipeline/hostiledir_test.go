package pipeline_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/directory"
	"appliance/internal/interop"
	"appliance/internal/lockedbuf"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/split"
)

// plant writes, as dir/certs/planted.pem, a certificate for owner that claims victim's
// identifier: its subjectKeyIdentifier (ski) or its issuer and serial number. It need not
// chain anywhere: RecipientInfo attribution goes by identifier, so a certificate anyone can
// drop in the folder (or in LDAP) is enough to try.
func plant(t testing.TB, dir string, victim *x509.Certificate, owner string, ski bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(424242),
		Subject:        pkix.Name{CommonName: "planted"},
		NotBefore:      time.Now().Add(-time.Hour),
		NotAfter:       time.Now().Add(24 * time.Hour),
		KeyUsage:       x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{owner},
	}
	parent := tmpl
	if ski {
		tmpl.SubjectKeyId = victim.SubjectKeyId
	} else {
		tmpl.SerialNumber = new(big.Int).Set(victim.SerialNumber)
		tmpl.SubjectKeyId = []byte{0x91, 0xa7}
		parent = &x509.Certificate{RawSubject: victim.RawIssuer, PublicKey: key.Public(), SubjectKeyId: []byte{1}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "certs", "planted.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// plantedDirectory is the test PKI's folder plus a planted certificate.
func plantedDirectory(t *testing.T, r *rig, victim *x509.Certificate, owner string, ski bool) *directory.Directory {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(r.env.File("certs"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, r.env.File(filepath.Join("certs", e.Name())), filepath.Join(dir, "certs", e.Name()))
	}
	plant(t, dir, victim, owner, ski)
	d, err := directory.Open(directory.Options{CertsDir: filepath.Join(dir, "certs"), RootsFile: r.env.File("roots.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Ambiguities()) != 1 {
		t.Fatalf("planted certificate not seen as ambiguous: %+v", d.Ambiguities())
	}
	return d
}

// TestPassThroughPlantedIdentifier: a client encrypted to Alice and Bob; Erin, also an
// envelope recipient, has planted a certificate claiming Bob's identifier. Bob's RecipientInfo
// must not reach Erin's package: it is refused (fail closed), and Bob is refused for lack of a
// RecipientInfo rather than given one someone else could claim.
func TestPassThroughPlantedIdentifier(t *testing.T) {
	r := setup(t)
	bob := r.env.Cert(t, "bob")
	for _, tc := range []struct {
		name string
		ski  bool
	}{
		{"fail planted subject key identifier", true},
		{"fail duplicated issuer and serial", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := plantedDirectory(t, r, bob, "erin@example.test", tc.ski)
			logs := &lockedbuf.Buffer{}
			p, err := pipeline.New(pipeline.Options{
				Directory: dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice}, Policy: split.Policy{},
				Hostname: "relay.example.test", Logger: slog.New(slog.NewTextHandler(logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			der := r.encrypt(t, []byte(content), []string{"alice", "bob"}, encryptOpts{ski: tc.ski})
			msg := mimeMessage("From: alice@example.test\r\nTo: bob@example.test, erin@example.test\r\n", envelopedType, der)
			env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "erin")}
			plan, err := p.PlanPassThrough(env, msg)
			if err != nil {
				t.Fatal(err)
			}
			var bobRI *split.PlannedRecipientInfo
			for i, ri := range plan.RecipientInfos {
				want := "issuer="
				if tc.ski {
					want = "ski="
				}
				if !strings.HasPrefix(ri.ID, want) {
					t.Fatalf("recipientinfo %+v: want a %s identifier", ri, want)
				}
				if ri.Owner != "alice@example.test" {
					bobRI = &plan.RecipientInfos[i]
				}
			}
			if bobRI == nil || !strings.Contains(bobRI.Dropped, "more than one owner") || bobRI.Owner != "" || len(bobRI.Packages) != 0 {
				t.Fatalf("bob's recipientinfo %+v: want it refused as ambiguous", bobRI)
			}
			for _, pk := range plan.Packages {
				if slices.Contains(pk.Recipients, "erin@example.test") || slices.Contains(pk.Recipients, "<erin@example.test>") {
					t.Errorf("erin got a package: %+v", pk)
				}
			}

			// Sealed for real: no package carries Bob's RecipientInfo.
			res, pkgs := r.run(t, p, env, msg)
			for _, d := range pkgs {
				if slices.Contains(d.owner, "bob") {
					t.Errorf("package for %v carries bob's recipientinfo", d.rcpts)
				}
			}
			if len(res.Plan.Refused) == 0 {
				t.Errorf("nobody refused: %+v", res.Plan)
			}
		})
	}
}

// TestListPlantedIdentifier: a list member whose certificate's identifier is claimed by a
// planted certificate is skipped (never sent plaintext, never encrypted to an identifier
// someone else claims); the other members get the post.
func TestListPlantedIdentifier(t *testing.T) {
	env := setup(t).env
	bob := env.Cert(t, "bob")
	for _, tc := range []struct {
		name string
		ski  bool
	}{
		{"fail planted subject key identifier", true},
		{"fail duplicated issuer and serial", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			plant(t, dir, bob, "mallory@example.test", tc.ski)
			members := []string{"bob@example.test", "dave@example.test", "mallory@example.test"}
			ls := newListPipeline(t, split.Policy{}, []memberPKI{{dir: dir, names: []string{"planted"}}},
				lists.List{Posters: lists.Posters{Anyone: true}}, members)
			post := encryptedPost(interop.OpenSSLEncrypt(t, ls.env.PKI, []byte(listContent), []string{"list"}, interop.EncryptOptions{}), "olivia@example.org")
			s, err := ls.pipe.Process(context.Background(), "LP", postEnv("olivia@example.org"), bytes.NewReader(post))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, pk := range s.Packages {
				got = append(got, pk.RcptTo...)
			}
			if len(got) != 1 || got[0] != "dave@example.test" {
				t.Fatalf("packages for %v, want dave's only", got)
			}
			logs := ls.logs.String()
			if !strings.Contains(logs, "member=bob@example.test") || !strings.Contains(logs, "more than one owner") {
				t.Fatalf("no log line skipping bob for the ambiguous identifier:\n%s", logs)
			}
		})
	}
}
