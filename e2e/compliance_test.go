package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"mime/multipart"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/audit"
	"appliance/cms"
	"appliance/dkim"
	"appliance/internal/ci"
	"appliance/internal/interop"
	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
	"appliance/journal"
	"appliance/metrics"
)

const (
	journalAddr = "journal@example.test"
	listAddr    = "list@example.test"
)

// complianceRig is a daemon with DKIM ([[dkim]] for example.test with alice's key on the token),
// a journal (grace's certificate is the officer's, alice signs), an audit trail signed with
// alice's key, and a list (bob and carol) anyone may post to.
type complianceRig struct {
	*rig
	auditDir string
	dns      string // dkimpy's DNS answers: the example.test key record
	all      []sink.Transaction
	deferred bool   // the journal was deferred once: the trail has its deferred record
	metrics  string // the daemon's [metrics] listener, http://HOST:PORT
}

func newComplianceRig(t *testing.T, bcc, policy string) *complianceRig {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		ci.Skipf(t, "python3 missing: install python3-dkim (scripts/deps.sh)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim").Run(); err != nil {
		ci.Skipf(t, "python3-dkim missing (scripts/deps.sh): %v", err)
	}
	env := softhsmtest.Setup(t)
	dir := t.TempDir()
	maddr := FreeAddr(t)
	c := &complianceRig{auditDir: filepath.Join(dir, "audit"), metrics: "http://" + maddr}
	members := filepath.Join(dir, "members")
	if err := os.WriteFile(members, []byte(bob+"\n"+carol+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := dkim.Record(env.Cert(t, "alice").PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(map[string]string{dkim.RecordName("appl", "example.test"): rec})
	c.dns = filepath.Join(dir, "dns.json")
	if err := os.WriteFile(c.dns, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c.rig = newRig(t, func(cfg *Config) {
		cfg.Policy.Bcc = bcc
		cfg.Extra = fmt.Sprintf(`
[[dkim]]
domain = "example.test"
selector = "appl"
key = "pkcs11:token=appliance;object=alice"

[journal]
address = %q
certs = [%q]
sender = %q
policy = %q

[audit]
dir = %q
key = "pkcs11:token=appliance;object=alice"

[[list]]
address = %q
key = "pkcs11:token=appliance;object=list"
cert = %q
members_file = %q
posters = "anyone"

[metrics]
listen = %q
`, journalAddr, env.File("grace.pem"), alice, policy, c.auditDir, listAddr, env.File("list.chain.pem"), members, maddr)
	})
	return c
}

// TestServeCompliance: with a journal, DKIM and an audit trail configured, in both Bcc modes,
// plain, pass-through and list mail submitted over SMTP to `appliance serve`:
//   - the packages of the message pass the independent privacy checker as without a journal, and
//     none of them names the journal address;
//   - one more transaction goes to the journal address alone, from the journal sender; it
//     decrypts with openssl for the journal certificate and for no recipient's, its signature
//     verifies, its report lists every envelope recipient with its kind and the package each
//     got, each package's recipients and the SHA-256 of the package as the next hop received it,
//     and it carries the message as submitted;
//   - every transaction, the journal's included, has a DKIM signature dkimpy verifies, and one
//     whose Subject was changed fails;
//   - after the daemon stops, `appliance audit verify -require-signed` passes on its trail, which
//     holds an accepted record per message (Bcc recipients included), a sealed record per
//     package with the digest the next hop received, and a delivery record per recipient.
func TestServeCompliance(t *testing.T) {
	t.Parallel()
	for _, bcc := range []string{"individual", "group"} {
		t.Run(bcc, func(t *testing.T) {
			c := newComplianceRig(t, bcc, "nowait")
			group := bcc == "group"
			accepted := 0

			t.Run("plain", func(t *testing.T) {
				c.sink.Reset()
				exp := c.send(t, submission{msg: Message{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin}, Subject: "plan", Text: "see you\n"}})
				accepted++
				n := 3
				if group {
					n = 2
				}
				rest, jtx := c.collect(t, n+1)
				if _, err := c.checker.Check(context.Background(), exp, rest); err != nil {
					t.Fatalf("privacy/completeness check failed with a journal:\n%v", err)
				}
				c.checkJournal(t, jtx, rest, exp.Message, map[string]string{bob: journal.KindTo, carol: journal.KindCc, dave: journal.KindBcc, erin: journal.KindBcc})
				c.checkDKIM(t, append(rest, jtx))
			})

			t.Run("pass-through", func(t *testing.T) {
				c.sink.Reset()
				f := forge{t: t, pki: c.checker.PKI, dir: t.TempDir()}
				hdr := "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nCc: carol@example.test\r\n" +
					"Subject: encrypted by the client\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pt1@client.example.test>\r\n"
				inner := []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nFor bob, carol and two hidden readers.\r\n")
				msg := append([]byte(hdr), f.encrypt("", f.sign("alice", inner), "alice", "bob", "carol", "dave", "erin")...)
				rcpt := []string{bob, carol, dave, erin}
				res, err := SubmitGo(c.daemon.Addr, alice, rcpt, msg)
				if err != nil || res.Mail != nil || res.Data != nil {
					t.Fatalf("submit: %v %+v", err, res)
				}
				accepted++
				n := 3
				if group {
					n = 2
				}
				rest, jtx := c.collect(t, n+1)
				exp := Expect{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave, erin}, Rcpt: rcpt, GroupBcc: group, Message: inner}
				if _, err := c.checker.Check(context.Background(), exp, rest); err != nil {
					t.Fatalf("privacy/completeness check failed with a journal:\n%v", err)
				}
				c.checkJournal(t, jtx, rest, msg, map[string]string{bob: journal.KindTo, carol: journal.KindCc, dave: journal.KindEnvelope, erin: journal.KindEnvelope})
				c.checkDKIM(t, append(rest, jtx))
			})

			t.Run("list", func(t *testing.T) {
				c.sink.Reset()
				exp := c.send(t, submission{msg: Message{From: alice, To: []string{listAddr}, Subject: "to the list", Text: "hello members\n"}})
				accepted++
				rest, jtx := c.collect(t, 3)
				for _, tx := range rest {
					if len(tx.RcptTo) != 1 || tx.MailFrom != "" {
						t.Errorf("list package %s -> %v, want one member from <>", tx.MailFrom, tx.RcptTo)
						continue
					}
					// Each member's package (signed by the list over the envelope) opens for that
					// member alone.
					name := strings.TrimSuffix(tx.RcptTo[0], "@example.test")
					other := map[string]string{"bob": "carol", "carol": "bob"}[name]
					env, err := interop.OpenSSLVerify(t, c.env.PKI, tx.Data)
					if err != nil {
						t.Errorf("the list's signature on %s's package: %v", name, err)
						continue
					}
					if _, err := interop.OpenSSLDecrypt(t, c.env.PKI, name, env); err != nil {
						t.Errorf("%s cannot decrypt their list package: %v", name, err)
					}
					if _, err := interop.OpenSSLDecrypt(t, c.env.PKI, other, env); err == nil {
						t.Errorf("%s decrypts %s's list package", other, name)
					}
				}
				c.checkJournal(t, jtx, rest, exp.Message, map[string]string{listAddr: journal.KindTo})
				c.checkDKIM(t, append(rest, jtx))
			})
			t.Run("journal deferred", func(t *testing.T) {
				// The next hop defers the journal once: it is retried, not dropped, and the
				// message's own packages go out beside it (policy nowait).
				c.sink.Reset()
				c.sink.AddFault(sink.Fault{Stage: sink.AtRcpt, Rcpt: journalAddr, Times: 1,
					Reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "journal store busy"}})
				exp := c.send(t, submission{msg: Message{From: alice, To: []string{bob}, Bcc: []string{dave}, Subject: "later", Text: "journal me\n"}})
				accepted++
				rest, jtx := c.collect(t, 3)
				if c.sink.Refused() != 1 {
					t.Errorf("the sink refused %d times, want the journal once", c.sink.Refused())
				}
				if _, err := c.checker.Check(context.Background(), exp, rest); err != nil {
					t.Fatalf("privacy/completeness check failed:\n%v", err)
				}
				c.checkJournal(t, jtx, rest, exp.Message, map[string]string{bob: journal.KindTo, dave: journal.KindBcc})
				c.deferred = true
			})
			if t.Failed() {
				return
			}
			c.checkAudit(t, accepted)
		})
	}
}

// TestServeJournalWait: with [journal] policy = "wait", through serve:
//   - the next hop defers the journal address twice: nothing of the message arrives before the
//     journal, which arrives on the second retry, first; then the message's packages, which
//     pass the privacy checker and are those the journal's report lists;
//   - the next hop refuses the journal address: none of the message's packages is ever sent, and
//     the sender gets one DSN naming its recipients with the reason that the journal copy could
//     not be delivered, not naming the journal address.
func TestServeJournalWait(t *testing.T) {
	t.Parallel()
	c := newComplianceRig(t, "individual", "wait")

	t.Run("deferred", func(t *testing.T) {
		c.sink.Reset()
		c.sink.AddFault(sink.Fault{Stage: sink.AtRcpt, Rcpt: journalAddr, Times: 2,
			Reply: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "journal store busy"}})
		exp := c.send(t, submission{msg: Message{From: alice, To: []string{bob}, Bcc: []string{dave}, Subject: "held", Text: "journal me first\n"}})
		deadline := time.Now().Add(60 * time.Second)
		for c.sink.Refused() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("the journal was deferred %d times, want 2", c.sink.Refused())
			}
			time.Sleep(50 * time.Millisecond)
		}
		if txs := c.sink.Transactions(); len(txs) != 0 {
			t.Fatalf("sent %v while the journal was deferred", rcptSets(txs))
		}
		rest, jtx := c.collect(t, 3)
		for _, tx := range rest {
			if tx.Seq < jtx.Seq {
				t.Errorf("the package for %v arrived before the journal", tx.RcptTo)
			}
		}
		if _, err := c.checker.Check(context.Background(), exp, rest); err != nil {
			t.Fatalf("privacy/completeness check failed:\n%v", err)
		}
		c.checkJournal(t, jtx, rest, exp.Message, map[string]string{bob: journal.KindTo, dave: journal.KindBcc})
	})

	t.Run("refused", func(t *testing.T) {
		c.sink.Reset()
		c.sink.AddFault(sink.Fault{Stage: sink.AtRcpt, Rcpt: journalAddr,
			Reply: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no journal mailbox"}})
		defer c.sink.ClearFaults()
		c.send(t, submission{msg: Message{From: alice, To: []string{bob}, Bcc: []string{dave}, Subject: "never", Text: "not without a journal\n"}})
		txs, err := WaitPackages(c.sink, 1, 60*time.Second, 3*time.Second)
		if err != nil {
			t.Fatalf("%v (got %v)", err, rcptSets(txs))
		}
		d := txs[0]
		if d.MailFrom != "" || !slices.Equal(d.RcptTo, []string{alice}) {
			t.Fatalf("transaction %s -> %v, want only a DSN to the sender", d.MailFrom, d.RcptTo)
		}
		text := string(d.Data)
		if !strings.Contains(text, "journal copy could not be delivered") {
			t.Errorf("the DSN does not say the journal copy failed:\n%s", text)
		}
		if strings.Contains(strings.ToLower(text), "journal@") {
			t.Errorf("the DSN names the journal address:\n%s", text)
		}
		for _, a := range []string{bob, dave} {
			if !strings.Contains(text, "rfc822;"+a) && !strings.Contains(text, "rfc822; "+a) {
				t.Errorf("the DSN does not name %s:\n%s", a, text)
			}
		}
	})

	// Both journal packages were spooled: the sealed count has them as mode journal.
	got, err := metrics.Scrape(context.Background(), c.metrics+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, p := range []string{"compat", "modern", "none"} {
		n += got[`appliance_packages_sealed_total{mode="journal",profile="`+p+`"}`]
	}
	if n != 2 {
		t.Errorf("%v journal packages counted as sealed, want 2", n)
	}

	// The trail has the held packages bounced with the reason, beside the journal's own refusal.
	if !c.daemon.Stop() {
		t.Fatal("the daemon did not stop on SIGTERM")
	}
	files, _ := filepath.Glob(filepath.Join(c.auditDir, "audit-*.log"))
	bounced := map[string]string{}
	for _, r := range readTrail(t, files) {
		if r.Type == audit.TypeDelivery && r.Outcome == audit.Bounced {
			bounced[norm(r.Recipient)] = r.Reply
		}
	}
	for _, a := range []string{bob, dave} {
		if !strings.Contains(bounced[norm(a)], "journal copy could not be delivered") {
			t.Errorf("trail: %s bounced with %q, want the journal reason", a, bounced[norm(a)])
		}
	}
	if !strings.Contains(bounced[journalAddr], "no journal mailbox") {
		t.Errorf("trail: the journal bounced with %q, want the next hop's reply", bounced[journalAddr])
	}
}

// collect waits for n transactions, records them, and returns those of the message and the
// journal's; the journal address is in no other transaction, envelope or bytes.
func (c *complianceRig) collect(t *testing.T, n int) (rest []sink.Transaction, jtx sink.Transaction) {
	t.Helper()
	txs, err := WaitPackages(c.sink, n, 90*time.Second, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("%v (got %v)", err, rcptSets(txs))
	}
	c.all = append(c.all, txs...)
	found := 0
	for _, tx := range txs {
		if slices.Contains(tx.RcptTo, journalAddr) {
			found++
			jtx = tx
			continue
		}
		if bytes.Contains(bytes.ToLower(tx.Data), []byte("journal@")) {
			t.Errorf("the package for %v names the journal address", tx.RcptTo)
		}
		rest = append(rest, tx)
	}
	if found != 1 {
		t.Fatalf("%d transactions to the journal address, want 1 (got %v)", found, rcptSets(txs))
	}
	return rest, jtx
}

// checkJournal checks the journal transaction of a message whose packages are rest.
func (c *complianceRig) checkJournal(t *testing.T, jtx sink.Transaction, rest []sink.Transaction, original []byte, kinds map[string]string) {
	t.Helper()
	if jtx.MailFrom != alice || len(jtx.RcptTo) != 1 || jtx.RcptTo[0] != journalAddr {
		t.Errorf("journal envelope %s -> %v, want the journal sender to the journal address alone", jtx.MailFrom, jtx.RcptTo)
	}
	head, _, _ := bytes.Cut(jtx.Data, []byte("\r\n\r\n"))
	for a := range kinds {
		if bytes.Contains(bytes.ToLower(jtx.Data), []byte(strings.ToLower(a))) {
			t.Errorf("the journal package shows %s outside its encryption", a)
		}
	}
	for _, a := range []string{dave, erin, bob, carol} {
		if bytes.Contains(head, []byte(a)) {
			t.Errorf("the journal header names %s", a)
		}
	}
	for _, name := range []string{"bob", "carol", "dave", "erin", "alice"} {
		if _, err := interop.OpenSSLDecrypt(t, c.env.PKI, name, jtx.Data); err == nil {
			t.Errorf("%s, not a journal officer, decrypts the journal package", name)
		}
	}
	signed, err := interop.OpenSSLDecrypt(t, c.env.PKI, "grace", jtx.Data)
	if err != nil {
		t.Fatalf("the journal certificate's key does not decrypt the journal package: %v", err)
	}
	inner, err := interop.OpenSSLVerify(t, c.env.PKI, signed)
	if err != nil {
		t.Fatalf("journal signature: %v", err)
	}
	rep, orig := readJournal(t, inner)
	if !bytes.Equal(orig, original) {
		t.Errorf("the journal's message differs from the one submitted:\n%q\nwant\n%q", orig, original)
	}
	if rep.MailFrom != alice {
		t.Errorf("report mail_from %q", rep.MailFrom)
	}
	got := map[string]string{}
	for _, r := range rep.Recipients {
		got[r.Address] = r.Kind
	}
	for a, k := range kinds {
		if got[a] != k {
			t.Errorf("report: recipient %s has kind %q, want %q (report %+v)", a, got[a], k, rep.Recipients)
		}
	}
	if len(got) != len(kinds) {
		t.Errorf("report lists %d recipients, want %d: %+v", len(got), len(kinds), rep.Recipients)
	}
	// Each package of the report is a transaction the next hop got, byte for byte.
	if len(rep.Packages) != len(rest) {
		t.Fatalf("report lists %d packages, the next hop got %d", len(rep.Packages), len(rest))
	}
	byDigest := map[string]sink.Transaction{}
	for _, tx := range rest {
		byDigest[digestOf(tx.Data)] = tx
	}
	for i, p := range rep.Packages {
		tx, ok := byDigest[p.Digest]
		if !ok {
			t.Errorf("report package %d (%v) has a digest of no delivered package", i, p.Recipients)
			continue
		}
		if !slices.Equal(sorted(normAll(p.Recipients)), sorted(normAll(tx.RcptTo))) {
			t.Errorf("report package %d is for %v, its transaction for %v", i, p.Recipients, tx.RcptTo)
		}
		if p.Mode == "encrypted" && len(p.RecipientInfos) == 0 {
			t.Errorf("report package %d lists no RecipientInfo", i)
		}
		if tx.MailFrom == "" && len(tx.RcptTo) == 1 && !c.namesMember(t, p.RecipientInfos, tx.RcptTo[0]) {
			// A list member's package: its RecipientInfo is the member's certificate's.
			t.Errorf("report package %d for list member %s has RecipientInfos %q, not the member's certificate", i, tx.RcptTo[0], p.RecipientInfos)
		}
	}
	for _, r := range rep.Recipients {
		if r.Package == nil && r.Address != listAddr {
			t.Errorf("report: %s got no package (refused %q)", r.Address, r.Refused)
		}
		if r.Package != nil && !slices.Contains(normAll(rep.Packages[*r.Package].Recipients), norm(r.Address)) {
			t.Errorf("report: %s is said to have got package %d, for %v", r.Address, *r.Package, rep.Packages[*r.Package].Recipients)
		}
	}
}

// namesMember reports whether ids (journal.RecipientInfoIDs) name the certificate of addr, a
// test user, by issuer and serial or by subject key identifier.
func (c *complianceRig) namesMember(t *testing.T, ids []string, addr string) bool {
	cert := c.env.Cert(t, strings.TrimSuffix(norm(addr), "@example.test"))
	want := journal.RecipientInfoIDs([]*cms.RecipientInfo{
		{Kind: cms.KeyTrans, Issuer: cert.RawIssuer, Serial: cert.SerialNumber},
		{Kind: cms.KeyTrans, SubjectKeyID: cert.SubjectKeyId},
	})
	return slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(want, id) })
}

func readJournal(t *testing.T, inner []byte) (*journal.Report, []byte) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(inner))
	if err != nil {
		t.Fatalf("%v\n%s", err, inner)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	p1, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	var rep journal.Report
	if err := json.NewDecoder(p1).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	p2, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	var orig bytes.Buffer
	if _, err := orig.ReadFrom(p2); err != nil {
		t.Fatal(err)
	}
	return &rep, orig.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// checkDKIM: every transaction's DKIM signature verifies with dkimpy against the record served
// locally, and fails once a signed field (Subject) is changed.
func (c *complianceRig) checkDKIM(t *testing.T, txs []sink.Transaction) {
	t.Helper()
	for _, tx := range txs {
		if out, ok := c.dkimVerify(t, tx.Data); !ok || !strings.Contains(out, "ok example.test appl rsa-sha256") {
			t.Errorf("package for %v: DKIM does not verify:\n%s", tx.RcptTo, out)
		}
		i := bytes.Index(tx.Data, []byte("\r\nSubject: "))
		if i < 0 {
			t.Errorf("package for %v has no Subject", tx.RcptTo)
			continue
		}
		changed := slices.Concat(tx.Data[:i+11], []byte("Re: "), tx.Data[i+11:])
		if out, ok := c.dkimVerify(t, changed); ok {
			t.Errorf("package for %v verifies with a changed Subject:\n%s", tx.RcptTo, out)
		}
	}
}

func (c *complianceRig) dkimVerify(t *testing.T, msg []byte) (string, bool) {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", filepath.Join(softhsmtest.RepoRoot(), "dkim", "testdata", "dkimverify.py"), c.dns)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		t.Fatal(err)
	}
	return string(out), err == nil
}

// readTrail reads the records of the trail's files.
func readTrail(t *testing.T, files []string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var r audit.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// checkAudit stops the daemon (closing and signing the trail) and checks the trail.
func (c *complianceRig) checkAudit(t *testing.T, messages int) {
	t.Helper()
	if !c.daemon.Stop() {
		t.Fatal("the daemon did not stop on SIGTERM")
	}
	files, err := filepath.Glob(filepath.Join(c.auditDir, "audit-*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no audit trail in %s: %v", c.auditDir, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := Run(ctx, c.env, Build(t), nil, append([]string{"audit", "verify", "-require-signed", "-key", c.env.File("alice.pem")}, files...)...)
	if err != nil {
		t.Fatalf("audit verify on the daemon's trail: %v\n%s", err, out)
	}
	recs := readTrail(t, files)
	count := map[string]int{}
	delivered := map[string]bool{}
	digests := map[string]bool{}
	var hidden, deferredJournal bool
	listMember := map[string]bool{norm(bob): true, norm(carol): true}
	for _, r := range recs {
		count[r.Type]++
		switch r.Type {
		case audit.TypeAccepted:
			if slices.Contains(r.Recipients, dave) && slices.Contains(r.Recipients, erin) {
				hidden = true
			}
		case audit.TypeSealed:
			digests[r.Digest] = true
			if r.Mode == "encrypted" && len(r.RecipientInfos) == 0 {
				t.Errorf("sealed record of package %d for %v names no RecipientInfo", *r.Package, r.Recipients)
			}
			if len(r.Recipients) == 1 && listMember[norm(r.Recipients[0])] && r.Mode == "encrypted" && !c.namesMember(t, r.RecipientInfos, r.Recipients[0]) {
				t.Errorf("sealed record for %s has RecipientInfos %q, not the member's certificate", r.Recipients[0], r.RecipientInfos)
			}
		case audit.TypeDelivery:
			if r.Outcome == audit.Deferred && r.Recipient == journalAddr && strings.Contains(r.Reply, "journal store busy") {
				deferredJournal = true
			}
			if r.Outcome == audit.Delivered {
				delivered[fmt.Sprintf("%s/%d/%s", r.Message, *r.Package, norm(r.Recipient))] = true
			}
		}
	}
	if count[audit.TypeAccepted] != messages || !hidden {
		t.Errorf("%d accepted records, want %d, with the Bcc recipients (%v)", count[audit.TypeAccepted], messages, hidden)
	}
	if count[audit.TypeSealed] != len(c.all) {
		t.Errorf("%d sealed records, the next hop got %d packages", count[audit.TypeSealed], len(c.all))
	}
	rcpts := 0
	for _, tx := range c.all {
		rcpts += len(tx.RcptTo)
		if !digests[digestOf(tx.Data)] {
			t.Errorf("no sealed record has the digest of the package for %v", tx.RcptTo)
		}
	}
	if len(delivered) != rcpts {
		t.Errorf("%d delivered records, the next hop accepted %d recipients", len(delivered), rcpts)
	}
	if c.deferred && !deferredJournal {
		t.Error("no deferred delivery record for the journal the next hop deferred")
	}
	if count[audit.TypeSeal] == 0 {
		t.Error("no file of the trail is sealed")
	}
}
