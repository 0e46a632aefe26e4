package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

const (
	alice  = "alice@example.test"
	bob    = "bob@example.test"
	carol  = "carol@example.test"
	dave   = "dave@example.test"
	erin   = "erin@example.test"
	heidi  = "heidi@example.test"
	nocert = "nocert@example.test"
)

// rig is one daemon with its own sink, spool and config.
type rig struct {
	t       *testing.T
	env     *softhsmtest.Env
	sink    *sink.Sink
	cfg     Config
	daemon  *Daemon
	checker *Checker
}

// newRig starts a sink and `appliance serve` configured by NewConfig and then edit.
func newRig(t *testing.T, edit func(*Config)) *rig {
	t.Helper()
	env := softhsmtest.Setup(t)
	Build(t) // fail fast, before anything else is started
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	if edit != nil {
		edit(&cfg)
	}
	r := &rig{t: t, env: env, sink: s, cfg: cfg, checker: &Checker{PKI: pki, Tmp: t.TempDir()}}
	r.daemon = StartDaemon(t, env, cfg)
	return r
}

// submission is one message, its envelope, and how it is sent.
type submission struct {
	msg   Message
	rcpt  []string // RCPT TO; defaults to To+Cc+Bcc
	swaks bool
}

// send submits, requires 250 for the accepted recipients, and returns the expectation to check.
func (r *rig) send(t *testing.T, sub submission) Expect {
	t.Helper()
	rcpt := sub.rcpt
	if rcpt == nil {
		rcpt = append(append(slices.Clone(sub.msg.To), sub.msg.Cc...), sub.msg.Bcc...)
	}
	raw := sub.msg.Bytes()
	accepted := rcpt
	if sub.swaks {
		file := filepath.Join(t.TempDir(), "msg.eml")
		var err error
		if raw, err = WriteForSwaks(file, raw); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if _, err := SubmitSwaks(ctx, r.daemon.Addr, sub.msg.From, rcpt, file); err != nil {
			t.Fatal(err)
		}
	} else {
		res, err := SubmitGo(r.daemon.Addr, sub.msg.From, rcpt, raw)
		if err != nil {
			t.Fatal(err)
		}
		if res.Mail != nil || res.Data != nil {
			t.Fatalf("submission refused: MAIL %v, DATA %v", res.Mail, res.Data)
		}
		accepted = res.Accepted(rcpt)
	}
	return Expect{From: sub.msg.From, To: sub.msg.To, Cc: sub.msg.Cc, Bcc: sub.msg.Bcc, Rcpt: accepted, GroupBcc: r.cfg.Policy.Bcc == "group", Message: raw}
}

// expect waits for n packages and checks them.
func (r *rig) expect(t *testing.T, exp Expect, n int) []Package {
	t.Helper()
	txs, err := WaitPackages(r.sink, n, 90*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("%v (got %v)", err, rcptSets(txs))
	}
	pkgs, err := r.checker.Check(context.Background(), exp, txs)
	if err != nil {
		t.Fatalf("privacy/completeness check failed:\n%v", err)
	}
	return pkgs
}

func rcptSets(txs []sink.Transaction) []string {
	var out []string
	for _, tx := range txs {
		out = append(out, strings.Join(sorted(tx.RcptTo), ","))
	}
	slices.Sort(out)
	return out
}

func kinds(pkgs []Package) map[Kind]int {
	m := map[Kind]int{}
	for _, p := range pkgs {
		m[p.Kind]++
	}
	return m
}

func TestServeIndividual(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bin := Build(t)
	big := make([]byte, 20<<20)
	rand.Read(big)
	tests := []struct {
		name string
		sub  submission
		want int // transactions
	}{
		{"ok to cc bcc with go-smtp", submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin}, Subject: "plan", Text: "see you\n"}}, 3},
		{"ok to cc bcc with swaks", submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "plan", Text: "see you\n"},
			rcpt: []string{bob, carol, dave, erin}, swaks: true}, 3},
		{"ok bcc only", submission{msg: Message{From: alice, Bcc: []string{dave, erin}, Subject: "quiet", Text: "psst\n"}}, 2},
		{"ok envelope only", submission{msg: Message{From: alice, To: []string{bob}, Subject: "fyi", Text: "hello\n"}, rcpt: []string{bob, dave, erin}}, 3},
		{"ok 8bit and non-ascii subject", submission{msg: Message{From: alice, To: []string{bob}, Subject: "Grüße aus Köln – 東京", Text: "Straße, café, naïve: ÄÖÜ\n日本語のテキスト\n"}, rcpt: []string{bob, erin}}, 2},
		{"ok 8bit with swaks", submission{msg: Message{From: alice, To: []string{carol}, Subject: "Résumé", Text: "crème brûlée\n"}, rcpt: []string{carol, dave}, swaks: true}, 2},
		{"ok 20 MB attachment", submission{msg: Message{From: alice, To: []string{bob}, Subject: "big", Text: "attached\n", Attachment: big}, rcpt: []string{bob, dave}}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			exp := r.send(t, tt.sub)
			pkgs := r.expect(t, exp, tt.want)
			if k := kinds(pkgs); k[Encrypted] != tt.want {
				t.Errorf("kinds %v, want %d encrypted", k, tt.want)
			}
			if tt.sub.msg.Attachment == nil {
				// seal must make the same plan offline; the 20 MB case is skipped to save time.
				compareSeal(t, r, bin, exp, pkgs)
				compareInspect(t, r, bin, pkgs)
			}
		})
	}
}

type manifestEntry struct {
	File     string   `json:"file"`
	MailFrom string   `json:"mail_from"`
	RcptTo   []string `json:"rcpt_to"`
}

// compareSeal runs `appliance seal` on the same input and requires the same packages: the same
// envelope recipient sets and the same RecipientInfo owners, and a clean check of its output.
func compareSeal(t *testing.T, r *rig, bin string, exp Expect, served []Package) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "sealed")
	args := []string{"seal", "-config", r.daemon.ConfigPath, "-from", exp.From, "-out", out}
	for _, a := range exp.Rcpt {
		args = append(args, "-rcpt", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for try := 1; ; try++ {
		_, err := Run(ctx, r.env, bin, exp.Message, args...)
		if err == nil {
			break
		}
		if try < 3 && TokenRace(err.Error()) {
			t.Logf("seal, try %d: %v", try, err)
			os.RemoveAll(out)
			time.Sleep(time.Duration(try) * 500 * time.Millisecond)
			continue
		}
		t.Fatalf("seal: %v", err)
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
	for i, m := range manifest {
		if want := fmt.Sprintf("%03d.eml", i+1); m.File != want {
			t.Errorf("manifest entry %d names %q, want %q", i, m.File, want)
		}
		data, err := os.ReadFile(filepath.Join(out, m.File))
		if err != nil {
			t.Fatal(err)
		}
		txs = append(txs, sink.Transaction{MailFrom: m.MailFrom, RcptTo: m.RcptTo, Data: data})
	}
	sealed, err := r.checker.Check(context.Background(), exp, txs)
	if err != nil {
		t.Fatalf("seal's packages fail the check:\n%v", err)
	}
	plan := func(pkgs []Package) []string {
		var out []string
		for _, p := range pkgs {
			out = append(out, fmt.Sprintf("%s rcpt=%s ri=%s", p.Kind, strings.Join(sorted(p.Tx.RcptTo), ","), strings.Join(p.OwnerNames, ",")))
		}
		slices.Sort(out)
		return out
	}
	if got, want := plan(sealed), plan(served); !slices.Equal(got, want) {
		t.Errorf("seal's plan differs from serve's:\nseal:  %q\nserve: %q", got, want)
	}
}

func TestServeGroup(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) { c.Policy.Bcc = "group" })
	bin := Build(t)
	tests := []struct {
		name string
		sub  submission
		want int
	}{
		{"ok to cc bcc", submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin}, Subject: "plan", Text: "see you\n"}}, 2},
		{"ok envelope only with swaks", submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "plan", Text: "see you\n"},
			rcpt: []string{bob, carol, dave, erin}, swaks: true}, 2},
		{"ok bcc only", submission{msg: Message{From: alice, Bcc: []string{dave, erin}, Subject: "quiet", Text: "psst\n"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.sink.Reset()
			exp := r.send(t, tt.sub)
			pkgs := r.expect(t, exp, tt.want)
			compareSeal(t, r, bin, exp, pkgs)
			compareInspect(t, r, bin, pkgs)
		})
	}
}

func TestMissingCert(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy string
		kinds  map[Kind]int
	}{
		{"ok reject", "reject", map[Kind]int{Encrypted: 2}},
		{"ok plaintext", "plaintext", map[Kind]int{Encrypted: 2, SignedOnly: 1}},
		{"ok drop", "drop", map[Kind]int{Encrypted: 2, DSN: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRig(t, func(c *Config) { c.Policy.MissingCert = tt.policy })
			msg := Message{From: alice, To: []string{bob}, Cc: []string{nocert}, Subject: "no cert", Text: "hello\n"}
			rcpt := []string{bob, nocert, dave}
			res, err := SubmitGo(r.daemon.Addr, alice, rcpt, msg.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			var se *smtp.SMTPError
			switch {
			case tt.policy == "reject":
				if !errors.As(res.Rcpt[nocert], &se) || se.Code != 550 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 1}) {
					t.Fatalf("RCPT %s: %v, want 550 5.7.1", nocert, res.Rcpt[nocert])
				}
			case res.Rcpt[nocert] != nil:
				t.Fatalf("RCPT %s: %v, want 250 under missing_cert=%s", nocert, res.Rcpt[nocert], tt.policy)
			}
			if res.Mail != nil || res.Data != nil || res.Rcpt[bob] != nil || res.Rcpt[dave] != nil {
				t.Fatalf("submission refused: %+v", res)
			}
			exp := Expect{From: alice, To: msg.To, Cc: msg.Cc, Rcpt: res.Accepted(rcpt), Message: msg.Bytes()}
			switch tt.policy {
			case "plaintext":
				exp.Plaintext = []string{nocert}
			case "drop":
				exp.Dropped = []string{nocert}
			}
			n := 0
			for _, c := range tt.kinds {
				n += c
			}
			pkgs := r.expect(t, exp, n)
			if got := kinds(pkgs); fmt.Sprint(got) != fmt.Sprint(tt.kinds) {
				t.Errorf("kinds %v, want %v", got, tt.kinds)
			}
			for _, p := range pkgs {
				if p.Kind == SignedOnly && !bytes.Contains(p.Content, []byte("hello")) {
					t.Errorf("signed-only package lacks the text: %q", p.Content)
				}
			}
		})
	}
}

type inspectReport struct {
	File           string `json:"file"`
	Kind           string `json:"kind"`
	RecipientInfos []struct {
		Owner string `json:"owner"`
	} `json:"recipient_infos"`
	UnknownOwners int      `json:"unknown_owners"`
	Revealed      []string `json:"revealed"`
}

// compareInspect requires `appliance inspect -json` to see in each package what the outside tools
// saw: the same RecipientInfo owners and the same revealed people. An operator audits with it, so
// it must not miss anyone.
func compareInspect(t *testing.T, r *rig, bin string, pkgs []Package) {
	t.Helper()
	dir := t.TempDir()
	args := []string{"inspect", "-json", "-config", r.daemon.ConfigPath}
	for i, p := range pkgs {
		f := filepath.Join(dir, fmt.Sprintf("%03d.eml", i+1))
		if err := os.WriteFile(f, p.Tx.Data, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := Run(ctx, r.env, bin, nil, args...)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	var reports []inspectReport
	if err := json.Unmarshal(out, &reports); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, out)
	}
	if len(reports) != len(pkgs) {
		t.Fatalf("inspect reported %d files, want %d", len(reports), len(pkgs))
	}
	for i, rep := range reports {
		var owners []string
		for _, ri := range rep.RecipientInfos {
			owners = append(owners, norm(ri.Owner))
		}
		slices.Sort(owners)
		owners = slices.Compact(owners)
		if got, want := strings.Join(owners, ","), strings.Join(pkgs[i].Owners, ","); got != want || rep.UnknownOwners != 0 {
			t.Errorf("%s: inspect names RecipientInfo owners %q (%d unknown), openssl %q", rep.File, got, rep.UnknownOwners, want)
		}
		if got, want := strings.Join(sorted(rep.Revealed), ","), strings.Join(pkgs[i].Revealed, ","); got != want {
			t.Errorf("%s: inspect says it reveals %q, the checker found %q", rep.File, got, want)
		}
	}
}
