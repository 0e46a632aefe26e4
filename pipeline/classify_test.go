package pipeline_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"appliance/internal/interop"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/split"
)

// TestClassifiedDispatch: the pipeline classifies before anything else. A client's envelope
// under a signature, in a part, under a label that hides it, or next to a second Content-Type
// field is refused with a reason and never sealed as plain; one under an odd but valid
// spelling of its label is split exactly.
func TestClassifiedDispatch(t *testing.T) {
	r := setup(t)
	all := []string{"alice", "bob", "carol", "dave", "erin"}
	der := r.encrypt(t, []byte(content), all, encryptOpts{stream: true})
	entity := mimeMessage("", envelopedType, der)
	opaque := interop.OpenSSLSign(t, r.env.PKI, "alice", entity, interop.SignOptions{Encapsulated: true})
	detached := interop.OpenSSLSign(t, r.env.PKI, "alice", entity, interop.SignOptions{})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol", "dave", "erin")}
	p, logs := r.pipeline(t, split.Policy{}, pipeline.PassThroughPolicy{})

	refused := []struct {
		name    string
		msg     []byte
		wantErr error
		reason  string
	}{
		{"signed-data over encrypted", mimeMessage(toCc, "application/pkcs7-mime; smime-type=signed-data; name=smime.p7m", opaque),
			pipeline.ErrSignedOverEncrypted, "sign inside the encryption"},
		{"multipart/signed over encrypted", append([]byte(toCc), detached...), pipeline.ErrSignedOverEncrypted, "sign inside the encryption"},
		{"envelope labelled text/plain", mimeMessage(toCc, "text/plain; charset=us-ascii", der), pipeline.ErrUnaccountable, "labelled text/plain"},
		{"envelope labelled octet-stream without a p7m name", mimeMessage(toCc, "application/octet-stream; name=notes.bin", der), pipeline.ErrUnaccountable, "holds enveloped-data"},
		{"second content-type field", mimeMessage(toCc+"Content-Type: text/plain\r\n", envelopedType, der), pipeline.ErrUnaccountable, "2 Content-Type fields"},
		{"envelope as an attachment", []byte(toCc + "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n" +
			"Content-Type: text/plain\r\n\r\nsee attached\r\n--m\r\n" + string(entity) + "\r\n--m--\r\n"), pipeline.ErrUnaccountable, "not the whole message"},
		{"unknown smime-type", mimeMessage(toCc, "application/pkcs7-mime; smime-type=enveloped-datum", der), pipeline.ErrUnaccountable, "unknown smime-type"},
	}
	for _, tt := range refused {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			err := p.CheckMessage(context.Background(), env, tt.msg)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("CheckMessage: %v, want %v mentioning %q", err, tt.wantErr, tt.reason)
			}
			res, err := p.Seal(context.Background(), "t1", env, tt.msg)
			if !errors.Is(err, tt.wantErr) || res != nil {
				t.Fatalf("Seal: %v, %v; want %v", res, err, tt.wantErr)
			}
			var re *pipeline.RefusedError
			if !errors.As(err, &re) || re.Reason == "" {
				t.Fatalf("Seal error %v carries no reason", err)
			}
			var temp interface{ Temporary() bool }
			if errors.As(err, &temp) && temp.Temporary() {
				t.Fatal("a refusal must be permanent")
			}
			out, err := p.Process(context.Background(), "t1", env, strings.NewReader(string(tt.msg)))
			if !errors.Is(err, tt.wantErr) || out != nil {
				t.Fatalf("Process: %v, %v; want %v", out, err, tt.wantErr)
			}
		})
	}
	if !strings.Contains(logs.String(), "message refused") {
		t.Errorf("refusals not logged:\n%.2000s", logs)
	}

	for _, ctype := range []string{
		"Application/X-PKCS7-MIME (sent by a client) ;\r\n smime-type*0=\"envel\";\r\n smime-type*1=\"oped-data\"; name=smime.p7m",
		"APPLICATION/PKCS7-MIME; SMIME-TYPE=ENVELOPED-DATA; NAME=\"SMIME.P7M\"",
		"application/octet-stream; name*=utf-8''mail%2Ep7m",
	} {
		t.Run("split "+ctype, func(t *testing.T) {
			msg := mimeMessage(toCc, ctype, der)
			if err := p.CheckMessage(context.Background(), env, msg); err != nil {
				t.Fatalf("CheckMessage: %v", err)
			}
			res, pkgs := r.run(t, p, env, msg)
			if len(pkgs) != 3 || len(res.Plan.Refused) != 0 {
				t.Fatalf("%d packages, %d refused; want 3, 0", len(pkgs), len(res.Plan.Refused))
			}
			r.checkPackages(t, der, []string{"dave", "erin"}, false, pkgs, map[string]bool{"bob": true, "dave": true})
		})
	}
}
