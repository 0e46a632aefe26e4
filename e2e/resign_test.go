package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/internal/sink"
)

// TestServeResign: under policy.signed_over_encrypted = "resign" a client's envelope under the
// client's signature (opaque signed-data as `openssl cms -sign -nodetach -stream` makes it, and
// multipart/signed), submitted with a real SMTP client, is split like a client-encrypted
// message and each package is signed again with the sender's key on the HSM: openssl verifies
// every package's outer signature (by the sender, carrying no one else's certificate), and the
// envelope inside passes the independent checker: each recipient decrypts it, and no package
// reveals a hidden recipient's address, RecipientInfo or certificate. `appliance seal` on the
// same message under the same configuration makes the same plan and passes the same checks.
func TestServeResign(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Policy.SignedOverEncrypted = "resign" })
	bin := Build(t)
	f := forge{t: t, pki: r.checker.PKI, dir: t.TempDir()}
	hdr := "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: Carol <carol@example.test>\r\n" +
		"Subject: re-signed\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <rs1@client.example.test>\r\n"
	inner := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nThe figures, for bob, carol and two hidden readers.\r\n")
	names := []string{"alice", "bob", "carol", "dave", "erin"}
	names = append(names, r.checker.PKI.Names(heidi)...)
	entity := f.encrypt("", f.sign("alice", inner), names...)
	rcpt := []string{bob, carol, dave, erin, heidi}
	exp := Expect{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin, heidi}, Rcpt: rcpt, Message: inner}

	for _, tt := range []struct {
		name string
		msg  []byte
	}{
		{"opaque", append([]byte(hdr), f.run(entity, "cms", "-sign", "-nodetach", "-stream",
			"-signer", f.pki.File("alice.pem"), "-inkey", f.pki.File("alice.key"))...)},
		{"multipart-signed", append([]byte(hdr+"MIME-Version: 1.0\r\n"), f.sign("alice", entity)...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			res, err := SubmitGo(r.daemon.Addr, alice, rcpt, tt.msg)
			if err != nil || res.Mail != nil || res.Data != nil {
				t.Fatalf("submit: %v %+v", err, res)
			}
			txs, err := WaitPackages(r.sink, 4, 90*time.Second, 300*time.Millisecond)
			if err != nil {
				t.Fatalf("%v (got %v)", err, rcptSets(txs))
			}
			served := r.checkResigned(t, "serve", exp, txs)
			want := []string{"rcpt=bob@example.test,carol@example.test ri=alice,bob,carol", "rcpt=dave@example.test ri=alice,dave",
				"rcpt=erin@example.test ri=alice,erin", "rcpt=heidi@example.test ri=alice,heidi-a,heidi-b"}
			if !slices.Equal(served, want) {
				t.Errorf("serve's plan is %q, want %q", served, want)
			}

			sealed := r.checkResigned(t, "seal", exp, r.sealResigned(t, bin, rcpt, tt.msg))
			if !slices.Equal(served, sealed) {
				t.Errorf("seal's plan differs from serve's:\nseal:  %q\nserve: %q", sealed, served)
			}
		})
	}
}

// checkResigned unwraps and checks every re-signed package and returns the plan: each package's
// recipients and RecipientInfo owners.
func (r *rig) checkResigned(t *testing.T, door string, exp Expect, txs []sink.Transaction) []string {
	t.Helper()
	var inner []sink.Transaction
	for _, tx := range txs {
		if ct := headerValue(string(tx.Data[:max(0, strings.Index(string(tx.Data), "\r\n\r\n"))]), "Content-Type"); !strings.Contains(ct, "signed") {
			t.Fatalf("%s: package for %v is %q, want signed", door, tx.RcptTo, ct)
		}
		inner = append(inner, r.unwrapResigned(t, door, tx))
	}
	pkgs, err := r.checker.Check(context.Background(), exp, inner)
	if err != nil {
		t.Fatalf("%s: the envelopes inside fail the check:\n%v", door, err)
	}
	var plan []string
	for _, p := range pkgs {
		if p.Kind != Encrypted {
			t.Errorf("%s: package for %v holds %s, want an envelope", door, p.Tx.RcptTo, p.Kind)
		}
		if leak := hiddenNames(exp, p); leak != "" {
			t.Errorf("%s: package for %v: %s", door, p.Tx.RcptTo, leak)
		}
		plan = append(plan, fmt.Sprintf("rcpt=%s ri=%s", strings.Join(sorted(p.Tx.RcptTo), ","), strings.Join(p.OwnerNames, ",")))
	}
	slices.Sort(plan)
	return plan
}

// sealResigned runs `appliance seal` on msg and returns its packages as transactions.
func (r *rig) sealResigned(t *testing.T, bin string, rcpt []string, msg []byte) []sink.Transaction {
	t.Helper()
	txs, err := r.sealPackages(t, bin, rcpt, msg)
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return txs
}

// sealPackages runs `appliance seal` from alice on msg and returns its packages as
// transactions, or seal's error (it then must have written no package).
func (r *rig) sealPackages(t *testing.T, bin string, rcpt []string, msg []byte) ([]sink.Transaction, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sealed")
	args := []string{"seal", "-config", r.daemon.ConfigPath, "-from", alice, "-out", out}
	for _, a := range rcpt {
		args = append(args, "-rcpt", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for try := 1; ; try++ {
		_, err := Run(ctx, r.env, bin, msg, args...)
		if err == nil {
			break
		}
		if try < 3 && TokenRace(err.Error()) {
			os.RemoveAll(out)
			time.Sleep(time.Duration(try) * 500 * time.Millisecond)
			continue
		}
		if _, serr := os.Stat(filepath.Join(out, "001.eml")); serr == nil {
			t.Errorf("seal failed (%v) but wrote a package", err)
		}
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(out, "manifest.json"))
	if err != nil {
		t.Fatalf("seal wrote no manifest: %v", err)
	}
	var manifest []manifestEntry
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatalf("manifest.json: %v\n%s", err, b)
	}
	var txs []sink.Transaction
	for _, m := range manifest {
		data, err := os.ReadFile(filepath.Join(out, m.File))
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, sink.Transaction{MailFrom: m.MailFrom, RcptTo: m.RcptTo, Data: crlf(data)})
	}
	return txs, nil
}
