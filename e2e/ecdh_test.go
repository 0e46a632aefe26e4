package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const (
	frank = "frank@example.test" // EC P-256, keyAgreement
	peggy = "peggy@example.test" // EC P-384, keyAgreement
)

// ecPlan is the plan a check found: each package's recipients and RecipientInfo owners, sorted.
func ecPlan(pkgs []Package) []string {
	var out []string
	for _, p := range pkgs {
		out = append(out, fmt.Sprintf("%s rcpt=%s ri=%s", p.Kind, strings.Join(sorted(p.Tx.RcptTo), ","), strings.Join(p.OwnerNames, ",")))
	}
	slices.Sort(out)
	return out
}

// ecPlans is the plan, per Bcc mode, for a message from alice To bob and frank (P-256), Bcc
// peggy (P-384), dave and erin: each EC recipient in a package of their own, alice's RSA
// self-copy in every package.
var ecPlans = []struct {
	bcc  string
	want []string
}{
	{"individual", []string{
		"encrypted rcpt=bob@example.test ri=alice,bob",
		"encrypted rcpt=dave@example.test ri=alice,dave",
		"encrypted rcpt=erin@example.test ri=alice,erin",
		"encrypted rcpt=frank@example.test ri=alice,frank",
		"encrypted rcpt=peggy@example.test ri=alice,peggy",
	}},
	{"group", []string{
		"encrypted rcpt=bob@example.test ri=alice,bob",
		"encrypted rcpt=dave@example.test,erin@example.test ri=alice,dave,erin",
		"encrypted rcpt=frank@example.test ri=alice,frank",
		"encrypted rcpt=peggy@example.test ri=alice,peggy",
	}},
}

// TestServeKeyAgree: recipients with EC certificates (frank on P-256, peggy on P-384), visible
// and Bcc, next to RSA recipients, through the real daemon on SoftHSM2 in both Bcc modes: each
// EC recipient gets a package of its own holding its KeyAgreeRecipientInfo and the sender's RSA
// self-copy, openssl decrypts every package as each of its recipients (the independent checker),
// no package reveals anyone outside its visible set, `appliance seal` makes the same plan and
// `appliance inspect` names the same RecipientInfo owners as openssl.
func TestServeKeyAgree(t *testing.T) {
	t.Parallel()
	bin := Build(t)
	for _, tt := range ecPlans {
		t.Run("ok "+tt.bcc, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Policy.Bcc = tt.bcc })
			exp := r.send(t, submission{msg: Message{From: alice, To: []string{bob, frank}, Bcc: []string{peggy, dave, erin},
				Subject: "for EC recipients", Text: "agreed keys\n"}})
			pkgs := r.expect(t, exp, len(tt.want))
			if got := ecPlan(pkgs); !slices.Equal(got, tt.want) {
				t.Fatalf("plan %q, want %q", got, tt.want)
			}
			for _, p := range pkgs {
				for _, who := range []string{frank, peggy} {
					if slices.Contains(p.Tx.RcptTo, who) && !slices.Contains(p.Decrypted, strings.TrimSuffix(who, "@example.test")) {
						t.Errorf("package for %v: decrypted by %v, not by %s", p.Tx.RcptTo, p.Decrypted, who)
					}
				}
			}
			compareSeal(t, r, bin, exp, pkgs)
			compareInspect(t, r, bin, pkgs) // inspect names each KeyAgreeRecipientInfo's owner
		})
	}
}

// TestPassThroughKeyAgree: a client's envelope (openssl cms -encrypt) for RSA and EC recipients
// is split without decrypting in both Bcc modes: each client KeyAgreeRecipientInfo is kept
// intact and attributed to its certificate's owner by its RecipientEncryptedKey's identifier,
// each EC recipient's package is its own, openssl decrypts every package as each of its
// recipients, and `appliance seal` makes the same plan.
func TestPassThroughKeyAgree(t *testing.T) {
	t.Parallel()
	bin := Build(t)
	for _, tt := range ecPlans {
		t.Run("ok "+tt.bcc, func(t *testing.T) {
			r := newRig(t, func(c *Config) { c.Policy.Bcc = tt.bcc })
			f := forge{t: t, pki: r.checker.PKI, dir: t.TempDir()}
			hdr := "From: Alice <alice@example.test>\nTo: bob@example.test, Frank <frank@example.test>\n" +
				"Subject: client-encrypted for EC recipients\nDate: Sat, 28 Nov 2026 10:00:00 +0000\nMessage-ID: <ec1@client.example.test>\n"
			inner := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nEncrypted by the client for RSA and EC keys.\r\n")
			msg := f.encrypt(hdr, f.sign("alice", inner), "alice", "bob", "frank", "peggy", "dave", "erin")
			rcpt := []string{bob, frank, peggy, dave, erin}
			res, err := SubmitGo(r.daemon.Addr, alice, rcpt, msg)
			if err != nil || res.Mail != nil || res.Data != nil {
				t.Fatalf("submit: %v %+v", err, res)
			}
			exp := Expect{From: alice, To: []string{bob, frank}, Bcc: []string{peggy, dave, erin}, Rcpt: rcpt,
				GroupBcc: tt.bcc == "group", Message: inner}
			pkgs := r.expect(t, exp, len(tt.want))
			if got := ecPlan(pkgs); !slices.Equal(got, tt.want) {
				t.Fatalf("plan %q, want %q", got, tt.want)
			}
			txs, err := r.sealPackages(t, bin, rcpt, msg)
			if err != nil {
				t.Fatalf("seal: %v", err)
			}
			sealed, err := r.checker.Check(context.Background(), exp, txs)
			if err != nil {
				t.Fatalf("seal's packages fail the check:\n%v", err)
			}
			if got := ecPlan(sealed); !slices.Equal(got, tt.want) {
				t.Fatalf("seal's plan %q, want %q", got, tt.want)
			}
		})
	}
}
