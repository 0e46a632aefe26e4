package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestServeClassifies submits, with a real SMTP client and through `appliance seal`, messages
// that hide a client's envelope from a classifier that trusts labels: signed over the
// encryption (opaque, as `openssl cms -sign -nodetach -stream` makes it, and multipart/signed),
// labelled text/plain, attached to a multipart/mixed, or with a second Content-Type field.
// Each is refused at end of DATA with 554 5.7.x and its reason, and `seal` exits non-zero
// saying why; none is sealed as plain. A client envelope under an odd but valid spelling of
// its label (comments, upper case, x-pkcs7, an RFC 2231 continuation) is split exactly, and
// the independent checker finds every package within its recipients' visible set.
func TestServeClassifies(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	bin := Build(t)
	f := forge{t: t, pki: r.checker.PKI, dir: t.TempDir()}
	hdr := "From: alice@example.test\r\nTo: bob@example.test\r\nSubject: numbers\r\nMessage-ID: <c1@client.example.test>\r\n"
	inner := f.sign("alice", []byte("Content-Type: text/plain\r\n\r\nThe numbers, for bob and a hidden dave.\r\n"))
	entity := f.encrypt("", inner, "alice", "bob", "dave") // MIME-Version, Content-Type and the envelope
	opaque := f.run(entity, "cms", "-sign", "-nodetach", "-stream", "-signer", f.pki.File("alice.pem"),
		"-inkey", f.pki.File("alice.key"))
	body := entity[bytes.Index(entity, []byte("\r\n\r\n"))+4:]
	relabel := func(ctype string) []byte {
		return []byte(hdr + "MIME-Version: 1.0\r\nContent-Type: " + ctype + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + string(body))
	}
	rcpts := []string{bob, dave}

	refused := []struct {
		name, reason string
		msg          []byte
	}{
		{"signed-data over encrypted", "sign inside the encryption", append([]byte(hdr), opaque...)},
		{"multipart/signed over encrypted", "sign inside the encryption", append([]byte(hdr), f.sign("alice", entity)...)},
		{"envelope labelled text/plain", "labelled text/plain", relabel("text/plain; charset=us-ascii")},
		{"envelope attached", "not the whole message", []byte(hdr + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
			"Content-Type: text/plain\r\n\r\nsee the attachment\r\n--m\r\n" + string(entity) + "\r\n--m--\r\n")},
		{"second content-type field", "2 Content-Type fields", []byte("Content-Type: text/plain\r\n" + string(relabel("application/pkcs7-mime; smime-type=enveloped-data")))},
	}
	for _, tt := range refused {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			res, err := SubmitGo(r.daemon.Addr, alice, rcpts, tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			var se *smtp.SMTPError
			if !errors.As(res.Data, &se) || se.Code != 554 || se.EnhancedCode[0] != 5 || se.EnhancedCode[1] != 7 ||
				!strings.Contains(se.Message, tt.reason) {
				t.Fatalf("DATA: %v, want 554 5.7.x mentioning %q", res.Data, tt.reason)
			}
			if strings.Contains(se.Message, "dave") {
				t.Errorf("the reply names a recipient: %q", se.Message)
			}
			out := filepath.Join(t.TempDir(), "sealed")
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, err = Run(ctx, r.env, bin, tt.msg, "seal", "-config", r.daemon.ConfigPath, "-from", alice,
				"-rcpt", bob, "-rcpt", dave, "-out", out)
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("seal: %v, want a failure mentioning %q", err, tt.reason)
			}
			if _, err := os.Stat(filepath.Join(out, "001.eml")); err == nil {
				t.Error("seal wrote a package")
			}
		})
	}

	// Nothing of the refused messages reached the next hop; the split one did, exactly.
	msg := relabel("Application/X-PKCS7-MIME (from a client) ;\r\n SMIME-Type*0=\"envel\";\r\n smime-type*1=\"oped-data\"; name=smime.p7m")
	res, err := SubmitGo(r.daemon.Addr, alice, rcpts, msg)
	if err != nil || res.Data != nil {
		t.Fatalf("disguised but valid label: %v, DATA %v", err, res.Data)
	}
	exp := Expect{From: alice, To: []string{bob}, Bcc: []string{dave}, Rcpt: rcpts}
	pkgs := r.expect(t, exp, 2)
	for _, p := range pkgs {
		if p.Kind != Encrypted {
			t.Errorf("package for %v is %s", p.Tx.RcptTo, p.Kind)
		}
	}
	if txs := r.sink.Transactions(); len(txs) != 2 {
		t.Errorf("the next hop got %d transactions, want the 2 packages of the split message", len(txs))
	}
}
