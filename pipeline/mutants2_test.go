package pipeline_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"appliance/cms"
	"appliance/cms/oid"
	"appliance/directory"
	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/seal"
	"appliance/split"
)

// pipelineWith is newPipeline with the options set changes.
func pipelineWith(t *testing.T, pol split.Policy, set ...func(*pipeline.Options)) (*pipeline.Pipeline, *softhsmtest.Env) {
	t.Helper()
	_, env := newPipeline(t, pol, nil) // opens the shared token
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

// learntDirectory is a copy of the test certificates in which bob's client taught the
// appliance AES-256-GCM (a .caps.json sidecar, as directory.Learn writes it), so his
// certificate's directory entry carries the learnt profile "modern".
func learntDirectory(t *testing.T, env *softhsmtest.Env) *directory.Directory {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "certs")
	if err := os.CopyFS(certs, os.DirFS(env.File("certs"))); err != nil {
		t.Fatal(err)
	}
	caps, err := json.Marshal(directory.LearntCaps{
		Address:      "bob@example.test",
		CertID:       directory.CertID(env.Cert(t, "bob")),
		LearntAt:     time.Now().UTC(),
		Capabilities: []directory.Capability{{Algorithm: oid.AES256GCM.String()}, {Algorithm: oid.AES256CBC.String()}},
		Profile:      directory.ProfileModern,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "bob.caps.json"), caps, 0o644); err != nil {
		t.Fatal(err)
	}
	dir, err := directory.Open(directory.Options{CertsDir: certs, RootsFile: env.File("roots.pem")})
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := dir.Lookup("bob@example.test"); len(v) != 1 || v[0].Profile != directory.ProfileModern {
		t.Fatalf("bob's directory entries %+v: want one with the learnt profile modern", v)
	}
	return dir
}

// TestDomainProfilePin: a [[policy.domain]] profile pins the content profile of every recipient
// in its domain, over the profile learnt from a recipient's own client: bob's client announced
// AES-256-GCM (modern), example.test is pinned to compat, and bob's package is EnvelopedData
// with AES-256-CBC. Without the pin the learnt profile wins (the test would see no difference
// if the learnt profile did not reach the plan).
func TestDomainProfilePin(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pinned  map[string]string
		want    string
		auth    bool
		content string
	}{
		{"ok learnt profile without a pin", nil, seal.ProfileModern, true, oid.AES256GCM.String()},
		{"ok domain pin over the learnt profile", map[string]string{"example.test": split.ProfileCompat}, seal.ProfileCompat, false, oid.AES256CBC.String()},
		{"ok pin of another domain leaves it", map[string]string{"test": split.ProfileCompat, "example.org": split.ProfileCompat}, seal.ProfileModern, true, oid.AES256GCM.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, env := pipelineWith(t, split.Policy{DomainProfiles: tc.pinned}, func(o *pipeline.Options) {
				o.Directory = learntDirectory(t, softhsmtest.Setup(t))
			})
			s := process(t, p, "bob@example.test")
			if len(s.Packages) != 1 || len(s.Refused) != 0 {
				t.Fatalf("got %d packages, %d refused; want 1, 0", len(s.Packages), len(s.Refused))
			}
			pk := s.Packages[0]
			if pk.Mode != seal.ModeEncrypted || pk.Profile != tc.want {
				t.Fatalf("package records %s/%s, want %s/%s", pk.Mode, pk.Profile, seal.ModeEncrypted, tc.want)
			}
			if _, err := interop.OpenSSLDecrypt(t, env.PKI, "bob", render(t, pk)); err != nil {
				t.Fatalf("bob cannot decrypt his package: %v", err)
			}
			// The envelope as the seal writes it.
			res, err := p.Seal(context.Background(), "T6", queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test"}}, []byte(msg))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Plan.Packages) != 1 || res.Plan.Packages[0].Profile != tc.want {
				t.Fatalf("plan %+v: want one package of profile %s", res.Plan.Packages, tc.want)
			}
			e, err := cms.ParseEnveloped(res.Sealed.Packages[0].CMS().Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if e.Auth() != tc.auth || e.ContentEncryptionAlgorithm.Algorithm.String() != tc.content {
				t.Fatalf("envelope %v with content encryption %v, want AuthEnvelopedData %v with %s",
					e.ContentType, e.ContentEncryptionAlgorithm.Algorithm, tc.auth, tc.content)
			}
		})
	}
}
