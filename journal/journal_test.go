package journal_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
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
	"appliance/journal"
	"appliance/seal"

	"github.com/emersion/go-message/textproto"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	interop.Cleanup()
	os.Exit(code)
}

const original = "From: Alice <alice@example.test>\r\n" +
	"To: Bob <bob@example.test>\r\n" +
	"Cc: =?UTF-8?Q?Carol_D=C3=BCrr?= <CAROL@example.test>, team: frank@example.test;\r\n" +
	"Bcc: dave@example.test\r\n" +
	"Subject: quarterly figures\r\n" +
	"Message-ID: <q1@example.test>\r\n" +
	"Date: Thu, 3 Dec 2026 07:00:00 +0000\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Grüße, the figures.\r\n"

var envelope = []string{"bob@example.test", "carol@example.test", "dave@example.test", "erin@example.test", "frank@example.test"}

func header(t *testing.T, msg string) textproto.Header {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(msg)))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestReportKinds(t *testing.T) {
	rep := journal.NewReport("id1", time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC), "alice@example.test", "alice", header(t, original), envelope)
	want := map[string]string{
		"bob@example.test": journal.KindTo, "carol@example.test": journal.KindCc, "dave@example.test": journal.KindBcc,
		"erin@example.test": journal.KindEnvelope, "frank@example.test": journal.KindCc,
	}
	if len(rep.Recipients) != len(envelope) {
		t.Fatalf("%d recipients", len(rep.Recipients))
	}
	for _, r := range rep.Recipients {
		if want[r.Address] != r.Kind {
			t.Errorf("%s: kind %q, want %q", r.Address, r.Kind, want[r.Address])
		}
	}
	if rep.MessageID != "<q1@example.test>" {
		t.Errorf("message id %q", rep.MessageID)
	}
	i := rep.AddPackage(journal.Package{Recipients: []string{"bob@example.test", "carol@example.test"}})
	j := rep.AddPackage(journal.Package{Recipients: []string{"dave@example.test"}})
	rep.Refuse("erin@example.test", "5.7.1 no certificate")
	for _, r := range rep.Recipients {
		switch r.Address {
		case "bob@example.test", "carol@example.test":
			if r.Package == nil || *r.Package != i {
				t.Errorf("%s: package %v", r.Address, r.Package)
			}
		case "dave@example.test":
			if r.Package == nil || *r.Package != j {
				t.Errorf("%s: package %v", r.Address, r.Package)
			}
		case "erin@example.test":
			if r.Package != nil || r.Refused == "" {
				t.Errorf("erin: %+v", r)
			}
		}
	}
}

// TestJournalPackage: the journal package goes to the journal address alone, shows nothing of
// the message outside its encryption, decrypts with openssl for each journal certificate and
// for no one else, is signed by the journal sender, and carries the report (every recipient
// with its kind and package) and the original message byte for byte.
func TestJournalPackage(t *testing.T) {
	env := softhsmtest.Setup(t)
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	signer, err := tok.Signer(context.Background(), "pkcs11:token=appliance;object=alice")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := directory.LoadCertificates(env.File("alice.chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	sealer := &seal.Sealer{NewKey: hsmkeys.Token{Token: tok}.NewContentKey, OAEPHash: tok.OAEPHash}

	// A package of the message itself, for the report: bob's, sealed like the pipeline would.
	rep := journal.NewReport("id1", time.Now(), "alice@example.test", "alice", header(t, original), envelope)
	rep.AddPackage(journal.Package{Recipients: []string{"bob@example.test"}, Mode: "encrypted", Profile: "compat",
		RecipientInfos: []string{"issuer-serial:CN=x/0x1"}, Digest: "sha256:00"})

	j := &journal.Journal{
		Address: "journal@example.test", From: "alice@example.test", Hostname: "relay.example.test",
		Certs:  []*x509.Certificate{env.Cert(t, "bob"), env.Cert(t, "carol")},
		Sender: seal.Sender{Signer: signer, Chain: chain}, Sealer: sealer,
	}
	sealed, err := j.Seal(context.Background(), rep, []byte(original))
	if err != nil {
		t.Fatal(err)
	}
	if sealed.MailFrom != "alice@example.test" || len(sealed.RcptTo) != 1 || sealed.RcptTo[0] != "journal@example.test" {
		t.Fatalf("envelope %s -> %v", sealed.MailFrom, sealed.RcptTo)
	}
	var pkg bytes.Buffer
	if _, err := sealed.Body.WriteTo(&pkg); err != nil {
		t.Fatal(err)
	}
	// Outside the encryption: the journal's own header, nothing of the message.
	// (Strings with '@' cannot occur in base64; the short ones are looked for in the header.)
	head, _, _ := bytes.Cut(pkg.Bytes(), []byte("\r\n\r\n"))
	for _, leak := range []string{"bob@", "carol@", "CAROL@", "dave@", "erin@", "frank@", "q1@example.test", "quarterly", "id1"} {
		if bytes.Contains(head, []byte(leak)) || strings.Contains(leak, "@") && bytes.Contains(pkg.Bytes(), []byte(leak)) {
			t.Errorf("journal package shows %q outside its encryption", leak)
		}
	}
	outer, err := mail.ReadMessage(bytes.NewReader(pkg.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if outer.Header.Get("To") != "<journal@example.test>" || outer.Header.Get("Cc") != "" || outer.Header.Get("Bcc") != "" {
		t.Fatalf("outer header %v", outer.Header)
	}
	// The RecipientInfos are the journal certificates', nobody else's.
	d, err := journal.Describe(sealed.Body, "encrypted")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.RecipientInfos) != 2 || !strings.HasPrefix(d.Digest, "sha256:") {
		t.Fatalf("%+v", d)
	}
	env2, err := cms.ParseEnveloped(sealed.Body.CMS().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"bob", "carol"} {
		if !env2.RecipientInfos[i].Matches(env.Cert(t, name)) {
			t.Errorf("RecipientInfo %d is not %s's", i, name)
		}
	}

	for _, officer := range []string{"bob", "carol"} {
		signed, err := interop.OpenSSLDecrypt(t, env.PKI, officer, pkg.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", officer, err)
		}
		inner, err := interop.OpenSSLVerify(t, env.PKI, signed)
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		checkJournal(t, inner)
	}
	if _, err := interop.OpenSSLDecrypt(t, env.PKI, "dave", pkg.Bytes()); err == nil {
		t.Fatal("dave, not a journal certificate, decrypted the journal")
	}
}

func checkJournal(t *testing.T, inner []byte) {
	t.Helper()
	// openssl writes the signed content with the line ends it had.
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
	if p1.Header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Fatalf("first part %v", p1.Header)
	}
	var rep journal.Report
	if err := json.NewDecoder(p1).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, r := range rep.Recipients {
		kinds[r.Address] = r.Kind
	}
	if len(kinds) != len(envelope) || kinds["dave@example.test"] != journal.KindBcc || kinds["erin@example.test"] != journal.KindEnvelope || rep.MailFrom != "alice@example.test" || rep.AuthUser != "alice" {
		t.Fatalf("report %+v", rep)
	}
	if len(rep.Packages) != 1 || rep.Recipients[0].Package == nil || *rep.Recipients[0].Package != 0 {
		t.Fatalf("report packages %+v", rep)
	}
	p2, err := mr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	if p2.Header.Get("Content-Type") != "message/rfc822" {
		t.Fatalf("second part %v", p2.Header)
	}
	got, _ := io.ReadAll(p2)
	if string(got) != original {
		t.Fatalf("original changed:\n%q\nwant\n%q", got, original)
	}
}
