package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
)

// forge makes packages the way a correct (or a broken) appliance would, with openssl, so the
// checker can be shown to accept the right thing and to catch each kind of leak.
type forge struct {
	t   *testing.T
	pki *PKI
	dir string
}

func (f forge) run(stdin []byte, args ...string) []byte {
	f.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		f.t.Fatalf("openssl %v: %v: %s", args, err, stderr.String())
	}
	return out
}

// sign makes a multipart/signed entity of content, signed by name.
func (f forge) sign(name string, content []byte) []byte {
	return f.run(content, "cms", "-sign", "-signer", f.pki.File(name+".pem"), "-inkey", f.pki.File(name+".key"),
		"-certfile", f.pki.File("inter.pem"), "-binary")
}

// encrypt wraps entity in an EnvelopedData for the named users and returns a message with the
// given outer header lines.
func (f forge) encrypt(header string, entity []byte, names ...string) []byte {
	args := []string{"cms", "-encrypt", "-aes256", "-binary", "-outform", "DER"}
	for _, n := range names {
		args = append(args, f.pki.File(n+".pem"))
	}
	der := f.run(entity, args...)
	var b bytes.Buffer
	b.WriteString(strings.ReplaceAll(header, "\n", "\r\n"))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

func tx(from string, rcpt []string, data []byte) sink.Transaction {
	return sink.Transaction{MailFrom: from, RcptTo: rcpt, Data: data}
}

func TestCheck(t *testing.T) {
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	f := forge{t: t, pki: pki, dir: t.TempDir()}
	const (
		alice = "alice@example.test"
		bob   = "bob@example.test"
		carol = "carol@example.test"
		dave  = "dave@example.test"
		erin  = "erin@example.test"
		nobod = "nocert@example.test"
	)
	msg := Message{From: alice, To: []string{bob}, Cc: []string{carol}, Subject: "quarterly", Text: "the numbers\n"}
	submitted := msg.Bytes()
	_, body, _ := splitMessage(submitted)
	entity := append([]byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"), body...)
	signed := f.sign("alice", entity)
	outer := "From: alice@example.test\nTo: bob@example.test\nCc: carol@example.test\nSubject: quarterly\n"
	exp := Expect{From: alice, To: []string{bob}, Cc: []string{carol}, Rcpt: []string{bob, carol, dave}, Message: submitted}
	visible := tx(alice, []string{bob, carol}, f.encrypt(outer, signed, "bob", "carol", "alice"))
	hidden := tx(alice, []string{dave}, f.encrypt(outer, signed, "dave", "alice"))

	withBcc := exp
	withBcc.Rcpt = []string{bob, carol, dave, erin}
	withBcc.Bcc = []string{dave, erin}
	group := withBcc
	group.GroupBcc = true
	bccGroupTx := tx(alice, []string{dave, erin}, f.encrypt(outer, signed, "dave", "erin", "alice"))

	plain := exp
	plain.Rcpt = []string{bob, carol, nobod}
	plain.Plaintext = []string{nobod}
	plainTx := tx(alice, []string{nobod}, append([]byte(strings.ReplaceAll(outer, "\n", "\r\n")), signed...))

	drop := exp
	drop.Rcpt = []string{bob, carol, nobod}
	drop.Dropped = []string{nobod}
	dsn := func(names ...string) sink.Transaction {
		var b strings.Builder
		b.WriteString("From: MAILER-DAEMON@relay.example.test\r\nTo: alice@example.test\r\nSubject: undeliverable\r\n")
		b.WriteString("Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n")
		b.WriteString("Content-Type: text/plain\r\n\r\nnot delivered\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.test\r\n")
		for _, n := range names {
			b.WriteString("\r\nFinal-Recipient: rfc822; " + n + "\r\nAction: failed\r\nStatus: 5.7.1\r\n")
		}
		b.WriteString("--x--\r\n")
		return tx("", []string{alice}, []byte(b.String()))
	}

	tests := []struct {
		name string
		exp  Expect
		txs  []sink.Transaction
		want string // "" for ok, else a fragment of the expected violation
	}{
		{"ok individual", exp, []sink.Transaction{visible, hidden}, ""},
		{"ok group", group, []sink.Transaction{visible, bccGroupTx}, ""},
		{"ok plaintext", plain, []sink.Transaction{visible, plainTx}, ""},
		{"ok drop with dsn", drop, []sink.Transaction{visible, dsn(nobod)}, ""},
		{"fail bcc header", exp, []sink.Transaction{tx(alice, []string{bob, carol}, f.encrypt(outer+"Bcc: dave@example.test\n", signed, "bob", "carol", "alice")), hidden},
			`reveals "dave@example.test" to "bob@example.test"`},
		{"fail received for", exp, []sink.Transaction{tx(alice, []string{bob, carol}, f.encrypt("Received: from c by relay.example.test for <Dave@Example.test>; now\n"+outer, signed, "bob", "carol", "alice")), hidden},
			`reveals "dave@example.test" to "carol@example.test"`},
		{"fail recipientinfo", exp, []sink.Transaction{tx(alice, []string{bob, carol}, f.encrypt(outer, signed, "bob", "carol", "dave", "alice")), hidden},
			`reveals "dave@example.test" to "bob@example.test"`},
		{"fail recipientinfo of a stranger", exp, []sink.Transaction{visible, tx(alice, []string{dave}, f.encrypt(outer, signed, "dave", "erin"))},
			`reveals "erin@example.test" to "dave@example.test"`},
		{"fail header inside", exp, []sink.Transaction{tx(alice, []string{bob, carol}, f.encrypt(outer, f.sign("alice", append([]byte("Bcc: dave@example.test\r\n"), entity...)), "bob", "carol", "alice")), hidden},
			`reveals "dave@example.test"`},
		{"fail group not configured", withBcc, []sink.Transaction{visible, bccGroupTx}, `reveals "erin@example.test" to "dave@example.test"`},
		{"fail missing recipient", exp, []sink.Transaction{visible}, `"dave@example.test" is in 0 transactions`},
		{"fail duplicate recipient", exp, []sink.Transaction{visible, hidden, hidden}, `"dave@example.test" is in 2 transactions`},
		{"fail unexpected recipient", exp, []sink.Transaction{visible, hidden, tx(alice, []string{erin}, f.encrypt(outer, signed, "erin"))}, `"erin@example.test", who is not an accepted recipient`},
		{"fail no recipientinfo", exp, []sink.Transaction{visible, tx(alice, []string{dave}, f.encrypt(outer, signed, "alice"))}, `no RecipientInfo for envelope recipient "dave@example.test"`},
		{"fail content changed", exp, []sink.Transaction{visible, tx(alice, []string{dave}, f.encrypt(outer, f.sign("alice", append(entity, "P.S.\r\n"...)), "dave"))}, "signed content differs"},
		{"fail signed by another", exp, []sink.Transaction{visible, tx(alice, []string{dave}, f.encrypt(outer, f.sign("bob", entity), "dave"))}, "not by the sender"},
		{"fail bad signature", exp, []sink.Transaction{visible, tx(alice, []string{dave}, f.encrypt(outer, bytes.Replace(signed, []byte("the numbers"), []byte("the Numbers"), 1), "dave"))}, "signature does not verify"},
		{"fail unprotected", exp, []sink.Transaction{visible, tx(alice, []string{dave}, submitted)}, "neither encrypted nor signed"},
		{"fail plaintext mixed", plain, []sink.Transaction{tx(alice, []string{bob, carol, nobod}, plainTx.Data)}, "signed-only transaction to"},
		{"fail dsn names another", drop, []sink.Transaction{visible, dsn(nobod, dave)}, `DSN names "dave@example.test", who was not dropped`},
		{"fail dropped without dsn", drop, []sink.Transaction{visible}, "DSNs name [], want exactly the dropped recipients"},
	}
	c := &Checker{PKI: pki, Tmp: t.TempDir()}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkgs, err := c.Check(context.Background(), tt.exp, tt.txs)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("violations:\n%v", err)
				}
				if len(pkgs) != len(tt.txs) {
					t.Fatalf("%d packages for %d transactions", len(pkgs), len(tt.txs))
				}
				return
			}
			if err == nil {
				t.Fatalf("no violation, want %q", tt.want)
			}
			if !errors.Is(err, ErrViolation) {
				t.Fatalf("error %v does not wrap ErrViolation", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("violations:\n%v\nwant one containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckPackageFacts(t *testing.T) {
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	f := forge{t: t, pki: pki}
	entity := []byte("Content-Type: text/plain\r\n\r\nhello\r\n")
	data := f.encrypt("From: alice@example.test\nTo: heidi@example.test\n", f.sign("alice", entity), "heidi-a", "heidi-b", "alice")
	c := &Checker{PKI: pki}
	pkgs, err := c.Check(context.Background(), Expect{From: Sender, To: []string{"heidi@example.test"}, Rcpt: []string{"heidi@example.test"}},
		[]sink.Transaction{tx(Sender, []string{"heidi@example.test"}, data)})
	if err != nil {
		t.Fatal(err)
	}
	p := pkgs[0]
	// Both of heidi's certificates must be found and both must decrypt.
	if got := strings.Join(p.OwnerNames, ","); got != "alice,heidi-a,heidi-b" {
		t.Errorf("owner names %q", got)
	}
	if got := strings.Join(p.Decrypted, ","); got != "heidi-a,heidi-b" {
		t.Errorf("decrypted by %q", got)
	}
	if p.Kind != Encrypted || p.Signer != Sender || p.CMS.ContentType != "pkcs7-envelopedData" || len(p.CMS.Recipients) != 3 {
		t.Errorf("package facts %+v", p)
	}
	if !bytes.Equal(crlf(p.Content), entity) {
		t.Errorf("content %q", p.Content)
	}
}

func TestParseCMSPrintSKI(t *testing.T) {
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.WriteFile(in, []byte("x"), 0o600)
	der := filepath.Join(dir, "der")
	if out, err := exec.Command("openssl", "cms", "-encrypt", "-aes256", "-keyid", "-in", in, "-outform", "DER", "-out", der,
		pki.File("carol.pem"), pki.File("frank.pem")).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out, err := openssl(context.Background(), "cms", "-cmsout", "-print", "-inform", "DER", "-in", der)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ParseCMSPrint(string(out))
	if err != nil {
		t.Fatal(err)
	}
	var owners []string
	for _, id := range info.Recipients {
		n, ok := pki.Owner(id)
		if !ok {
			t.Fatalf("no owner for %s", id)
		}
		owners = append(owners, n)
	}
	// frank is EC: openssl makes a kari for him, identified by his SKI too.
	if strings.Join(owners, ",") != "carol,frank" {
		t.Errorf("owners %v of %+v", owners, info.Recipients)
	}
}

const samplePrint = `CMS_ContentInfo: 
  contentType: pkcs7-envelopedData (1.2.840.113549.1.7.3)
  d.envelopedData: 
    version: 2
    originatorInfo: <ABSENT>
    recipientInfos:
      d.ktri: 
        version: 0
        d.issuerAndSerialNumber: 
          issuer: O=Appliance Test, CN=Appliance Test Intermediate CA
          serialNumber: 4096
        keyEncryptionAlgorithm: 
          algorithm: rsaEncryption (1.2.840.113549.1.1.1)
          parameter: NULL
        encryptedKey: 
          0000 - 3d fb 4c 3b 48 f0 20 02-1a 6f 24 30 3f 02 4f   =.L;H. ..o$0?.O
      d.ktri: 
        version: 2
        d.subjectKeyIdentifier: 
          0000 - 17 c6 78 c2 30 df d2 11-2b ce 5b 56 49 99 03   ..x.0...+.[VI..
          000f - 58 ac 0b d7 22                                 X..."
        keyEncryptionAlgorithm: 
          algorithm: rsaEncryption (1.2.840.113549.1.1.1)
    encryptedContentInfo: 
      contentType: pkcs7-data (1.2.840.113549.1.7.1)
`

func TestParseCMSPrint(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []RecipientID
		err  bool
	}{
		{"ok ktri by issuer and by ski", samplePrint, []RecipientID{
			{Kind: "ktri", Issuer: "O=Appliance Test, CN=Appliance Test Intermediate CA", Serial: "4096"},
			{Kind: "ktri", SKI: "17c678c230dfd2112bce5b5649990358ac0bd722"},
		}, false},
		{"ok kekri names nobody", "contentType: x\nrecipientInfos:\n  d.kekri:\n    version: 4\n", []RecipientID{{Kind: "kekri"}}, false},
		{"fail no content type", "recipientInfos:\n", nil, true},
		{"fail issuer without serial", "contentType: x\nrecipientInfos:\n  d.ktri:\n    issuer: CN=x\n", nil, true},
		{"fail field before recipientinfo", "contentType: x\nrecipientInfos:\n    issuer: CN=x\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info, err := ParseCMSPrint(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err %v, want error %v", err, tt.err)
			}
			if err == nil && !slicesEqual(info.Recipients, tt.want) {
				t.Errorf("recipients %+v, want %+v", info.Recipients, tt.want)
			}
		})
	}
}

func slicesEqual(a, b []RecipientID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func FuzzParseCMSPrint(f *testing.F) {
	f.Add(samplePrint)
	f.Add("contentType: x\nrecipientInfos:\n  d.kari:\n    subjectKeyIdentifier:\n      0000 - 01 02-03   ...\n")
	f.Fuzz(func(t *testing.T, s string) {
		info, err := ParseCMSPrint(s)
		if err != nil {
			return
		}
		for _, r := range info.Recipients {
			if r.Kind == "" || r.Issuer != "" && r.Serial == "" {
				t.Fatalf("incomplete identifier %+v", r)
			}
			if r.SKI != "" && strings.Trim(r.SKI, "0123456789abcdef") != "" {
				t.Fatalf("ski %q is not lowercase hex", r.SKI)
			}
		}
	})
}
