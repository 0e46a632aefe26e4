package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// bigMessage is a message from alice to bob of exactly n bytes whose last body line ends in
// marker, so that a package cut short is told from the whole one.
func bigMessage(n int, marker string) []byte {
	var b bytes.Buffer
	b.WriteString("From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: large\r\nMessage-ID: <big@example.test>\r\n\r\n")
	last := marker + "\r\n"
	for i := 0; n-b.Len()-len(last) >= 100; i++ {
		fmt.Fprintf(&b, "%08d %s\r\n", i, strings.Repeat("x", 66))
	}
	b.WriteString(strings.Repeat("y", n-b.Len()-len(last)) + last)
	return b.Bytes()
}

// TestMaxMessageBytes: Process reads a message whole when no bound is set (a message over the
// 1 MB of slack a bound gets is sealed to its last line); with a bound it seals a message of
// the bound plus that slack, and refuses, permanently and without sealing anything, one a byte
// longer rather than sealing it cut short.
func TestMaxMessageBytes(t *testing.T) {
	const marker = "LAST-LINE-OF-THE-MESSAGE"
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test"}, Helo: "client.example.test", ClientAddr: "127.0.0.1:4000", ReceivedAt: time.Now()}

	t.Run("ok no bound, over 1 MB sealed whole", func(t *testing.T) {
		p, penv := pipelineWith(t, split.Policy{}) // MaxMessageBytes 0
		m := bigMessage(3<<19, marker)             // 1.5 MB
		s, err := p.Process(context.Background(), "T7", env, bytes.NewReader(m))
		if err != nil {
			t.Fatalf("Process of a %d-byte message without a bound: %v", len(m), err)
		}
		if len(s.Packages) != 1 {
			t.Fatalf("%d packages, want 1", len(s.Packages))
		}
		inner, err := interop.OpenSSLDecrypt(t, penv.PKI, "bob", render(t, s.Packages[0]))
		if err != nil {
			t.Fatalf("bob cannot decrypt his package: %v", err)
		}
		content, err := interop.OpenSSLVerify(t, penv.PKI, inner)
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		body := m[bytes.Index(m, []byte("\r\n\r\n"))+4:]
		if !bytes.HasSuffix(content, body) {
			t.Fatalf("signed content (%d bytes) does not end in the whole %d-byte body; ends %q", len(content), len(body), content[max(0, len(content)-80):])
		}
	})

	t.Run("ok bound, the bound and the slack sealed", func(t *testing.T) {
		p, _ := pipelineWith(t, split.Policy{}, func(o *pipeline.Options) { o.MaxMessageBytes = 4096 })
		m := bigMessage(4096+1<<20, marker)
		if len(m) != 4096+1<<20 {
			t.Fatalf("message of %d bytes, want %d", len(m), 4096+1<<20)
		}
		s, err := p.Process(context.Background(), "T8", env, bytes.NewReader(m))
		if err != nil || len(s.Packages) != 1 {
			t.Fatalf("Process = %v, %v; want one package", s, err)
		}
	})

	t.Run("fail bound, a byte over it and the slack", func(t *testing.T) {
		var refused []string
		p, _ := pipelineWith(t, split.Policy{}, func(o *pipeline.Options) {
			o.MaxMessageBytes = 4096
			o.Events.Refused = func(stage, reason string) { refused = append(refused, stage+" "+reason) }
		})
		m := bigMessage(4096+1<<20+1, marker)
		if len(m) != 4096+1<<20+1 {
			t.Fatalf("message of %d bytes, want %d", len(m), 4096+1<<20+1)
		}
		s, err := p.Process(context.Background(), "T9", env, bytes.NewReader(m))
		if !errors.Is(err, queue.ErrMessageTooBig) || s != nil {
			t.Fatalf("Process of a %d-byte message over a 4096-byte bound = %v, %v; want no packages and ErrMessageTooBig", len(m), s, err)
		}
		if !strings.Contains(err.Error(), fmt.Sprint(4096+1<<20)) {
			t.Errorf("error %q does not say how many bytes were allowed", err)
		}
		if len(refused) != 1 || refused[0] != pipeline.StageSeal+" "+pipeline.ReasonTooBig {
			t.Errorf("refusals told %v, want one at the seal stage", refused)
		}
	})
}
