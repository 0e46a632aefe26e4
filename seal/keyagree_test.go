package seal_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/directory"
	"appliance/internal/interop"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// ecPlan is rig.plan with each certificate marked KeyAgree as the pipeline marks it, and the
// sender's self-copy certificate named by self.
func (r *rig) ecPlan(t testing.TB, msg []byte, rcpts []string, profile string, bcc split.BccMode, self string) (*split.Plan, map[string]*x509.Certificate) {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	certs := map[string]*x509.Certificate{}
	in := split.Input{Header: h, MailFrom: "alice@example.test", RcptTo: rcpts, Certs: map[string][]split.Cert{},
		Policy: split.Policy{Bcc: bcc, SelfCopy: true, Profile: profile}}
	add := func(name, owner string) split.Cert {
		c := r.env.Cert(t, name)
		id := directory.CertID(c)
		certs[id] = c
		return split.Cert{ID: id, Owner: owner, NotBefore: c.NotBefore, KeyAgree: cms.IsKeyAgree(c)}
	}
	for _, a := range rcpts {
		in.Certs[a] = []split.Cert{add(r.byAddr[a], a)}
	}
	in.SenderCerts = []split.Cert{add(self, "alice@example.test")}
	p, err := split.Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := split.CheckPrivacy(in, p); err != nil {
		t.Fatal(err)
	}
	return p, certs
}

// TestSealKeyAgree seals for RSA (bob, dave) and EC recipients (frank P-256, peggy P-384),
// visible and Bcc, in both Bcc modes and both profiles: each EC recipient's package is its own
// and holds its KeyAgreeRecipientInfo and the sender's RSA self-copy; openssl decrypts every
// package as its recipients and as the sender, and no one else's; the RSA packages hold no
// KeyAgreeRecipientInfo, and gpgsm and NSS still read the compat one.
func TestSealKeyAgree(t *testing.T) {
	r := setup(t)
	interop.Need(t, "openssl")
	to := []string{"bob@example.test", "frank@example.test", "dave@example.test"}
	rcpts := append(append([]string{}, to...), "peggy@example.test", "erin@example.test")
	msg := message(to, "for EC recipients\r\n")
	for _, profile := range []string{"compat", "modern"} {
		for _, bcc := range []split.BccMode{split.Individual, split.Group} {
			name := profile + map[split.BccMode]string{split.Individual: " individual", split.Group: " group"}[bcc]
			t.Run("ok "+name, func(t *testing.T) {
				plan, certs := r.ecPlan(t, msg, rcpts, profile, bcc, "alice")
				sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
				if err != nil {
					t.Fatal(err)
				}
				seen := map[string]bool{}
				for _, p := range sealed.Packages {
					env, err := cms.ParseEnveloped(p.CMS().Bytes())
					if err != nil {
						t.Fatal(err)
					}
					kari := 0
					for _, ri := range env.RecipientInfos {
						if ri.Kind == cms.KeyAgree {
							kari++
						}
					}
					pkg := render(t, p)
					ec := false
					for _, rc := range p.Recipients {
						seen[rc] = true
						who := r.byAddr[rc]
						if who == "frank" || who == "peggy" {
							ec = true
						}
						mustDecrypt(t, r, who, pkg)
					}
					mustDecrypt(t, r, "alice", pkg)
					switch {
					case ec && (len(p.Recipients) != 1 || kari != 1 || len(env.RecipientInfos) != 2):
						t.Fatalf("EC package for %v: %d recipientinfos, %d keyagree", p.Recipients, len(env.RecipientInfos), kari)
					case !ec && kari != 0:
						t.Fatalf("RSA package for %v holds %d keyagree recipientinfos", p.Recipients, kari)
					}
					for _, other := range []string{"frank", "peggy", "bob", "erin"} {
						if !strings.Contains(strings.Join(p.Recipients, ","), r.users[other]) {
							mustNotDecrypt(t, r, other, pkg)
						}
					}
					if !ec && profile == "compat" && !p.Hidden {
						for _, d := range []decoder{gpgsm, nss} {
							if _, err := d.decrypt(t, r.env.PKI, "bob", pkg); err != nil {
								t.Fatalf("%s as bob: %v", d.name, err)
							}
						}
					}
				}
				if len(seen) != len(rcpts) {
					t.Fatalf("delivered to %v, want %v", seen, rcpts)
				}
			})
		}
	}
	t.Run("ok ec sender's self-copy only in ec packages", func(t *testing.T) {
		// frank's certificate stands for an EC certificate of the sender's own.
		rcpts := []string{"bob@example.test", "peggy@example.test", "erin@example.test"}
		plan, certs := r.ecPlan(t, msg, rcpts, "compat", split.Individual, "frank")
		sealed, err := r.sealer().Seal(context.Background(), msg, plan, r.sender, certs)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range sealed.Packages {
			pkg := render(t, p)
			env, _ := cms.ParseEnveloped(p.CMS().Bytes())
			ec := r.byAddr[p.Recipients[0]] == "peggy"
			for _, ri := range env.RecipientInfos {
				if ri.Kind == cms.KeyAgree && !ec {
					t.Fatalf("RSA package for %v holds a keyagree recipientinfo", p.Recipients)
				}
			}
			if ec {
				mustDecrypt(t, r, "frank", pkg) // the sender's EC copy
			} else {
				mustNotDecrypt(t, r, "frank", pkg)
			}
		}
	})
	t.Run("ok list member wrap", func(t *testing.T) {
		s := r.sealer()
		key, err := s.NewKey(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ris, err := s.WrapMember(context.Background(), key, "peggy@example.test", []*x509.Certificate{r.env.Cert(t, "peggy")}, 0)
		if err != nil || len(ris) != 1 || ris[0].Kind != cms.KeyAgree {
			t.Fatalf("%v %v", ris, err)
		}
	})
}

// BenchmarkWrapRecipient is the per-recipient cost of sealing: one RecipientInfo for an RSA
// certificate (key transport on the token) against one for P-256 and P-384 certificates
// (ephemeral key and ECDH in process, the derived key brought to the token and the content key
// wrapped there).
func BenchmarkWrapRecipient(b *testing.B) {
	r := setup(b)
	s := r.sealer()
	ctx := context.Background()
	key, err := s.NewKey(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, who := range []string{"bob", "frank", "peggy"} {
		cert := r.env.Cert(b, who)
		b.Run(map[string]string{"bob": "rsa2048", "frank": "p256", "peggy": "p384"}[who], func(b *testing.B) {
			for b.Loop() {
				if _, err := s.WrapMember(ctx, key, r.users[who], []*x509.Certificate{cert}, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
