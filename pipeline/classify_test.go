package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/internal/interop"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smime"
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
	p, logs := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{})

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

// withPeopleFields rebuilds a client's envelope with the fields that can name people and that
// no signature or MAC covers: originatorInfo (a certificate and an "other" revocation entry)
// and unprotectedAttrs (unauthAttrs for AuthEnvelopedData), here naming a hidden recipient.
func withPeopleFields(t *testing.T, base *cms.Enveloped, cert []byte, name string) []byte {
	t.Helper()
	named := tlv(0x0c, []byte(name))
	otherOID := []byte{0x06, 0x03, 0x2a, 0x03, 0x04} // 1.2.3.4
	originator := tlv(0xa0, append(tlv(0xa0, cert), tlv(0xa1, tlv(0xa1, append(append([]byte{}, otherOID...), named...)))...))
	attrs := tlv(0x30, append(append([]byte{}, otherOID...), tlv(0x31, named)...))
	var set []byte
	for _, ri := range base.RecipientInfos {
		set = append(set, ri.Raw...)
	}
	ct := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	body := []byte{0x02, 0x01, 0x04}
	unprotTag := byte(0xa1)
	if base.Auth() {
		ct = []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17}
		body = []byte{0x02, 0x01, 0x00}
		unprotTag = 0xa2
	}
	body = append(body, originator...)
	body = append(body, tlv(0x31, set)...)
	body = append(body, base.EncryptedContentInfo...)
	if base.Auth() {
		body = append(body, base.AuthAttrs...)
		body = append(body, base.MAC...)
	}
	body = append(body, tlv(unprotTag, attrs)...)
	return tlv(0x30, append(ct, tlv(0xa0, tlv(0x30, body))...))
}

// TestEnvelopeFieldsNamingPeople: a client's originatorInfo and unprotected (or unauthenticated)
// attributes, here naming the Bcc recipient dave, reach no package; every package still
// decrypts in OpenSSL, dave's included.
func TestEnvelopeFieldsNamingPeople(t *testing.T) {
	r := setup(t)
	dave := r.env.Cert(t, "dave")
	for _, gcm := range []bool{false, true} {
		orig := r.encrypt(t, []byte(content), []string{"alice", "bob", "dave"}, encryptOpts{gcm: gcm})
		base, err := cms.ParseEnveloped(orig)
		if err != nil {
			t.Fatal(err)
		}
		der := withPeopleFields(t, base, dave.Raw, "dave@example.test")
		parsed, err := cms.ParseEnveloped(der)
		if err != nil || len(parsed.UnsignedFields()) != 2 {
			t.Fatalf("gcm=%v: the test envelope lacks the fields: %v", gcm, err)
		}
		p, logs := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{})
		env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "dave")}
		msg := mimeMessage("From: alice@example.test\r\nTo: bob@example.test\r\n", envelopedType, der)
		_, pkgs := r.run(t, p, env, msg)
		if len(pkgs) != 2 {
			t.Fatalf("gcm=%v: %d packages", gcm, len(pkgs))
		}
		for _, d := range pkgs {
			if d.env.OriginatorInfo != nil || d.env.UnprotectedAttrs != nil || d.env.UnsignedFields() != nil {
				t.Errorf("gcm=%v: package for %v carries originatorInfo or unprotected attributes", gcm, d.rcpts)
			}
			raw, _ := smime.Parse(bytes.NewReader(d.text), int64(len(d.text)))
			if !slices.Contains(d.rcpts, "dave") && (bytes.Contains(raw.DER, dave.Raw) || bytes.Contains(raw.DER, []byte("dave@example.test"))) {
				t.Errorf("gcm=%v: package for %v names dave", gcm, d.rcpts)
			}
			if d.env.Version != 0 {
				t.Errorf("gcm=%v: package for %v has version %d, want 0 without the fields", gcm, d.rcpts, d.env.Version)
			}
			if plain, err := interop.OpenSSLDecrypt(t, r.env.PKI, d.rcpts[0], d.text); err != nil || !bytes.Contains(plain, []byte("quarterly numbers")) {
				t.Errorf("gcm=%v: %s cannot decrypt its package: %v", gcm, d.rcpts[0], err)
			}
		}
		if !strings.Contains(logs.String(), "client envelope fields not passed on") {
			t.Errorf("gcm=%v: not logged", gcm)
		}
	}
}

// TestResignSignedOverEncrypted: under signed_over_encrypted = "resign" a client's envelope
// under its signature (opaque and multipart/signed) is split like a client-encrypted message and
// each package is signed again with the sender's key on the HSM: the signature verifies in
// OpenSSL, the envelope inside carries only the RecipientInfos its recipients may see, and each
// recipient decrypts it.
func TestResignSignedOverEncrypted(t *testing.T) {
	r := setup(t)
	der := r.encrypt(t, []byte(content), []string{"alice", "bob", "carol", "dave", "erin"}, encryptOpts{stream: true})
	entity := mimeMessage("", envelopedType, der)
	opaque := interop.OpenSSLSign(t, r.env.PKI, "alice", entity, interop.SignOptions{Encapsulated: true})
	detached := interop.OpenSSLSign(t, r.env.PKI, "alice", entity, interop.SignOptions{})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol", "dave", "erin")}
	p, _ := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{SignedOverEncrypted: split.ResignSignedOverEncrypted})
	for name, msg := range map[string][]byte{
		"opaque":   mimeMessage(toCc, "application/pkcs7-mime; smime-type=signed-data; name=smime.p7m", opaque),
		"detached": append([]byte(toCc), detached...),
	} {
		t.Run(name, func(t *testing.T) {
			if err := p.CheckMessage(context.Background(), env, msg); err != nil {
				t.Fatalf("CheckMessage: %v", err)
			}
			res, err := p.Seal(context.Background(), "t1", env, msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Sealed.Packages) != 3 {
				t.Fatalf("%d packages, want 3", len(res.Sealed.Packages))
			}
			var pkgs []delivered
			for _, pk := range res.Sealed.Packages {
				var b bytes.Buffer
				if _, err := pk.WriteTo(&b); err != nil {
					t.Fatal(err)
				}
				inner, err := interop.OpenSSLVerify(t, r.env.PKI, b.Bytes())
				if err != nil {
					t.Fatalf("package for %v: signature: %v", pk.Recipients, err)
				}
				parsed, err := smime.Parse(bytes.NewReader(inner), int64(len(inner)))
				if err != nil {
					t.Fatal(err)
				}
				d := delivered{text: inner}
				for _, a := range pk.Recipients {
					d.rcpts = append(d.rcpts, strings.TrimSuffix(strings.Trim(a, "<>"), "@example.test"))
				}
				if d.env, err = cms.ParseEnveloped(parsed.DER); err != nil {
					t.Fatal(err)
				}
				for _, ri := range d.env.RecipientInfos {
					d.owner = append(d.owner, r.ownerOf(t, ri))
				}
				hdr, _, _ := bytes.Cut(b.Bytes(), []byte("\r\n\r\n"))
				if bytes.Contains(hdr, []byte("erin@")) && !slices.Contains(d.rcpts, "erin") {
					t.Errorf("package for %v names erin in its header", d.rcpts)
				}
				pkgs = append(pkgs, d)
			}
			r.checkPackages(t, der, []string{"dave", "erin"}, false, pkgs, map[string]bool{"bob": true, "dave": true, "erin": true})
		})
	}
}

// TestCheckSpooledClassOnce: the check at end of DATA reads the staged message, refuses what
// CheckMessage refuses, and returns the class to keep with the message; Process given that
// class (in the envelope) makes the same packages as Process classifying on its own. Both wait
// for the memory budget: a worker whose context ends while waiting defers the message.
func TestCheckSpooledClassOnce(t *testing.T) {
	r := setup(t)
	der := r.encrypt(t, []byte(content), []string{"alice", "bob", "carol", "dave"}, encryptOpts{stream: true})
	budget := pipeline.NewBudget(64 << 10) // less than the encrypted message costs: it runs alone
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice},
		Hostname: "relay.example.test", Logger: slog.New(slog.DiscardHandler), Budget: budget,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol", "dave")}
	staged := func(msg []byte) *io.SectionReader {
		return io.NewSectionReader(bytes.NewReader(msg), 0, int64(len(msg)))
	}
	ctx := context.Background()

	refused := mimeMessage(toCc, "text/plain; charset=us-ascii", der)
	if class, err := p.CheckSpooled(ctx, env, staged(refused)); !errors.Is(err, pipeline.ErrUnaccountable) || class != "" {
		t.Fatalf("CheckSpooled of a hidden envelope: %q, %v", class, err)
	}
	for _, tt := range []struct {
		name, class string
		msg         []byte
	}{
		{"plain", "plain", []byte(toCc + "Subject: hi\r\n\r\nhello\r\n")},
		{"client-encrypted", "client-encrypted", mimeMessage(toCc, envelopedType, der)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			class, err := p.CheckSpooled(ctx, env, staged(tt.msg))
			if err != nil || class != tt.class {
				t.Fatalf("CheckSpooled: %q, %v; want %q", class, err, tt.class)
			}
			// The client's (streamed, BER) envelope is checked from its start alone.
			if _, _, head := smime.ClassifyHead(staged(tt.msg), int64(len(tt.msg))); head != (tt.class == "client-encrypted") {
				t.Errorf("checked from the envelope's start: %v", head)
			}
			if budget.InUse() != 0 {
				t.Fatalf("the check kept %d bytes of the budget", budget.InUse())
			}
			shape := func(env queue.Envelope) []string {
				out, err := p.Process(ctx, "c1", env, staged(tt.msg))
				if err != nil {
					t.Fatalf("Process (class %q): %v", env.Class, err)
				}
				// The budget is held until the queue has written the packages.
				if budget.InUse() == 0 {
					t.Error("the budget was given back before the packages were written")
				}
				var s []string
				for _, pk := range out.Packages {
					s = append(s, fmt.Sprint(pk.RcptTo, pk.Mode, pk.Profile))
					if _, err := pk.Body.WriteTo(io.Discard); err != nil {
						t.Fatal(err)
					}
				}
				if budget.InUse() != 0 {
					t.Errorf("%d bytes of the budget kept after the packages were written", budget.InUse())
				}
				return s
			}
			with := env
			with.Class = class
			if a, b := shape(with), shape(env); !slices.Equal(a, b) || len(a) == 0 {
				t.Errorf("packages with the recorded class %v, classifying again %v", a, b)
			}
		})
	}

	// Checked from the envelope's start, RecipientInfos of someone outside the envelope are
	// refused as CheckMessage refuses them, for an envelope whose ciphertext is cut off too.
	strict, _ := r.pipeline(t, split.Policy{}, split.PassThroughPolicy{Unknown: split.RejectUnknown})
	outsider := mimeMessage(toCc, envelopedType, r.encrypt(t, bytes.Repeat([]byte(content), 100), []string{"alice", "bob", "stranger"}, encryptOpts{stream: true}))
	for _, msg := range [][]byte{outsider, outsider[:len(outsider)*3/4]} {
		if _, _, head := smime.ClassifyHead(staged(msg), int64(len(msg))); !head {
			t.Fatal("not checked from the envelope's start")
		}
		benv := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")}
		if class, err := strict.CheckSpooled(ctx, benv, staged(msg)); !errors.Is(err, split.ErrRecipientInfoRejected) || class != "" {
			t.Errorf("CheckSpooled of RecipientInfos outside the envelope: %q, %v", class, err)
		}
	}
	if err := strict.CheckMessage(ctx, queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob")}, outsider); !errors.Is(err, split.ErrRecipientInfoRejected) {
		t.Errorf("CheckMessage: %v", err)
	}

	// Packages the queue drops unwritten (a failed commit) give the budget back once collected.
	if out, err := p.Process(ctx, "c3", env, staged([]byte(toCc+"\r\nhello\r\n"))); err != nil || budget.InUse() == 0 {
		t.Fatalf("Process: %v, %d bytes of the budget held", err, budget.InUse())
	} else {
		runtime.KeepAlive(out)
	}
	for i := 0; budget.InUse() != 0; i++ {
		if i == 1000 {
			t.Fatal("the budget of dropped packages was never given back")
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}

	// The budget held: a worker waits, and defers the message when told to stop.
	release, err := budget.Acquire(ctx, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = p.Process(cctx, "c2", env, staged([]byte(toCc+"\r\nhello\r\n")))
	var temp interface{ Temporary() bool }
	if !errors.As(err, &temp) || !temp.Temporary() {
		t.Errorf("Process waiting for the budget, cancelled: %v; want a temporary error", err)
	}
	release()
}
