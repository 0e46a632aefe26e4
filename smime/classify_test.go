package smime_test

import (
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/interop"
	"appliance/smime"
)

// DER builders for the classifier: only the shapes it reads (content types, the encapsulated
// content of SignedData) need to be real.
func tlv(tag byte, body []byte) []byte {
	n := len(body)
	out := []byte{tag}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(out, body...)
}

// ber is tlv with an indefinite length, as `openssl cms -stream` writes.
func ber(tag byte, body []byte) []byte {
	out := append([]byte{tag | 0x20, 0x80}, body...)
	return append(out, 0, 0)
}

var (
	oidData       = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01}
	oidSigned     = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}
	oidEnveloped  = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}
	oidEncrypted  = []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x06}
	oidAuthEnv    = []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17}
	oidCompressed = []byte{0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x09}
)

func contentInfo(ctOID []byte, body []byte) []byte {
	return tlv(0x30, append(append([]byte{}, ctOID...), tlv(0xa0, tlv(0x30, body))...))
}

// fakeEnvelope is an EnvelopedData (or AuthEnvelopedData) as far as its content type goes.
func fakeEnvelope(auth bool) []byte {
	if auth {
		return contentInfo(oidAuthEnv, []byte{0x02, 0x01, 0x00})
	}
	return contentInfo(oidEnveloped, []byte{0x02, 0x01, 0x00})
}

// fakeSigned is SignedData encapsulating content of type ectOID (nil content: detached).
func fakeSigned(ectOID, content []byte) []byte {
	eci := append([]byte{}, ectOID...)
	if content != nil {
		eci = append(eci, tlv(0xa0, tlv(0x04, content))...)
	}
	body := append([]byte{0x02, 0x01, 0x01, 0x31, 0x00}, tlv(0x30, eci)...)
	body = append(body, 0x31, 0x00)
	return contentInfo(oidSigned, body)
}

// fakeSignedBER is fakeSigned with indefinite lengths and a chunked eContent.
func fakeSignedBER(ectOID, content []byte) []byte {
	half := len(content) / 2
	chunks := append(tlv(0x04, content[:half]), tlv(0x04, content[half:])...)
	eci := append(append([]byte{}, ectOID...), ber(0xa0, ber(0x04, chunks))...)
	body := append([]byte{0x02, 0x01, 0x01, 0x31, 0x00}, ber(0x30, eci)...)
	body = append(body, 0x31, 0x00)
	return ber(0x30, append(append([]byte{}, oidSigned...), ber(0xa0, ber(0x30, body))...))
}

func b64(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s + "\r\n"
}

const top = "From: alice@example.test\r\nTo: bob@example.test\r\nMIME-Version: 1.0\r\n"

func p7m(ctype string, der []byte) string {
	return "Content-Type: " + ctype + "\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(der)
}

func envelopedEntity(der []byte) string {
	return p7m("application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m", der)
}

func multipart(ctype, boundary string, parts ...string) string {
	var b strings.Builder
	b.WriteString("Content-Type: " + ctype + "; boundary=\"" + boundary + "\"\r\n\r\n")
	for _, p := range parts {
		b.WriteString("--" + boundary + "\r\n" + p + "\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.String()
}

func signedMultipart(content string, sig []byte) string {
	return multipart("multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256", "sig",
		content, p7m("application/pkcs7-signature; name=smime.p7s", sig))
}

const text = "Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n"

func TestClassify(t *testing.T) {
	env := fakeEnvelope(false)
	detached := fakeSigned(oidData, nil)
	tests := []struct {
		name   string
		msg    string
		want   smime.Class
		reason string // a substring of the refusal
	}{
		{name: "plain text", msg: top + text, want: smime.Plain},
		{name: "plain no content-type", msg: top + "\r\nhello\r\n", want: smime.Plain},
		{name: "plain multipart with attachment", msg: top + multipart("multipart/mixed", "m", text,
			"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"), want: smime.Plain},
		{name: "plain detached signature", msg: top + signedMultipart(text, detached), want: smime.Plain},
		{name: "plain opaque signed-data of plain", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSigned(oidData, []byte(text))), want: smime.Plain},
		{name: "plain opaque signed ber of plain", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSignedBER(oidData, []byte(text))), want: smime.Plain},
		{name: "plain p7s attachment", msg: top + multipart("multipart/mixed", "m", text, p7m("application/octet-stream; name=x.p7s", detached)), want: smime.Plain},
		{name: "plain bad base64 in a text part", msg: top + multipart("multipart/mixed", "m", "Content-Transfer-Encoding: base64\r\n\r\n!!!% not base64 ===\r\n"), want: smime.Plain},
		{name: "plain quoted text mentioning pkcs7", msg: top + "Content-Type: text/plain\r\n\r\napplication/pkcs7-mime; smime-type=enveloped-data\r\n", want: smime.Plain},

		{name: "encrypted", msg: top + envelopedEntity(env), want: smime.ClientEncrypted},
		{name: "encrypted auth", msg: top + p7m("application/pkcs7-mime; smime-type=authEnveloped-data", fakeEnvelope(true)), want: smime.ClientEncrypted},
		{name: "encrypted label missing", msg: top + p7m("application/pkcs7-mime", env), want: smime.ClientEncrypted},
		{name: "refuse envelope labelled signed-data", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", env), want: smime.Refused, reason: "labelled smime-type=signed-data but holds enveloped-data"},
		{name: "refuse signed-data labelled enveloped-data", msg: top + p7m("application/pkcs7-mime; smime-type=enveloped-data", fakeSigned(oidData, []byte(text))), want: smime.Refused, reason: "labelled smime-type=enveloped-data but holds signed-data"},
		{name: "encrypted uppercase x-pkcs7 comments continuation", msg: top + p7m("Application/X-PKCS7-MIME (from a client) ;\r\n smime-type*0=\"envel\";\r\n smime-type*1=\"oped-DATA\" (sic); name=smime.p7m", env), want: smime.ClientEncrypted},
		{name: "encrypted octet-stream p7m", msg: top + p7m("application/octet-stream; name=\"MAIL.P7M\"", env), want: smime.ClientEncrypted},
		{name: "encrypted octet-stream p7m by disposition", msg: top + "Content-Disposition: attachment; filename*=utf-8''a.p7m\r\n" + p7m("application/octet-stream", env), want: smime.ClientEncrypted},
		{name: "encrypted binary ber", msg: top + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
			string(ber(0x30, append(append([]byte{}, oidEnveloped...), ber(0xa0, ber(0x30, []byte{0x02, 0x01, 0x00}))...))), want: smime.ClientEncrypted},

		{name: "signed-over opaque", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSigned(oidData, []byte(envelopedEntity(env)))), want: smime.SignedOverEncrypted},
		{name: "signed-over opaque ber", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSignedBER(oidData, []byte(envelopedEntity(env)))), want: smime.SignedOverEncrypted},
		{name: "signed-over econtent is the envelope", msg: top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSigned(oidEnveloped, env)), want: smime.SignedOverEncrypted},
		{name: "signed-over multipart/signed", msg: top + signedMultipart(envelopedEntity(env), detached), want: smime.SignedOverEncrypted},
		{name: "signed-over x-pkcs7-signature", msg: top + multipart("multipart/signed; protocol=\"application/x-pkcs7-signature\"", "s",
			envelopedEntity(env), p7m("application/x-pkcs7-signature", detached)), want: smime.SignedOverEncrypted},
		{name: "signed-over two layers", msg: top + signedMultipart(p7m("application/pkcs7-mime; smime-type=signed-data", fakeSigned(oidData, []byte(envelopedEntity(env)))), detached), want: smime.SignedOverEncrypted},

		{name: "refuse envelope in multipart/mixed", msg: top + multipart("multipart/mixed", "m", text, envelopedEntity(env)), want: smime.Refused, reason: "not the whole message"},
		{name: "refuse envelope labelled text/plain", msg: top + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(env), want: smime.Refused, reason: "labelled text/plain"},
		{name: "refuse envelope as undeclared base64", msg: top + "Content-Type: text/plain (application/pkcs7-mime)\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + b64(env), want: smime.Refused, reason: "does not declare"},
		{name: "refuse envelope as 7bit base64 text", msg: top + "Content-Type: text/plain\r\n\r\n" + b64(env), want: smime.Refused, reason: "labelled text/plain"},
		{name: "refuse envelope in quoted-printable octet-stream", msg: top + "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + qpEncode(env), want: smime.Refused, reason: "labelled application/octet-stream"},
		{name: "refuse uuencoded envelope in text", msg: top + "Content-Type: text/plain\r\n\r\nsee below\r\n\r\n" + uuencode("smime.p7m", env) + "\r\nbye\r\n", want: smime.Refused, reason: "uuencoded"},
		{name: "refuse uuencode transfer encoding", msg: top + "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n" + uuencode("a.bin", env), want: smime.Refused, reason: "uuencoded"},
		{name: "plain uuencoded text", msg: top + "Content-Type: text/plain\r\n\r\n" + uuencode("a.txt", []byte("hello there, nothing to see")), want: smime.Plain},
		{name: "refuse two content-type fields", msg: top + "Content-Type: text/plain\r\n" + envelopedEntity(env), want: smime.Refused, reason: "2 Content-Type fields"},
		{name: "refuse two content-type fields in a part", msg: top + multipart("multipart/mixed", "m", "Content-Type: text/plain\r\n"+text), want: smime.Refused, reason: "2 Content-Type"},
		{name: "refuse unknown smime-type", msg: top + p7m("application/pkcs7-mime; smime-type=enveloped-datax", env), want: smime.Refused, reason: "unknown smime-type"},
		{name: "refuse compressed-data", msg: top + p7m("application/pkcs7-mime; smime-type=compressed-data", contentInfo(oidCompressed, []byte{0x02, 0x01, 0x00})), want: smime.Refused, reason: "compressed-data"},
		{name: "refuse encrypted-data", msg: top + p7m("application/pkcs7-mime", contentInfo(oidEncrypted, []byte{0x02, 0x01, 0x00})), want: smime.Refused, reason: "1.2.840.113549.1.7.6"},
		{name: "refuse forwarded encrypted message", msg: top + multipart("multipart/mixed", "m", text, "Content-Type: message/rfc822\r\n\r\n"+top+envelopedEntity(env)), want: smime.Refused, reason: "not the whole message"},
		{name: "refuse envelope as signature", msg: top + signedMultipart(text, env), want: smime.Refused},
		{name: "refuse signature encapsulating an envelope", msg: top + signedMultipart(text, fakeSigned(oidData, []byte(envelopedEntity(env)))), want: smime.Refused, reason: "not the whole message"},
		{name: "refuse multipart/signed with three parts", msg: top + multipart("multipart/signed; protocol=\"application/pkcs7-signature\"", "s", text, p7m("application/pkcs7-signature", detached), envelopedEntity(env)), want: smime.Refused, reason: "3 parts"},
		{name: "refuse signed envelope inside mixed", msg: top + multipart("multipart/mixed", "m", signedMultipart(envelopedEntity(env), detached)), want: smime.Refused},
		{name: "refuse signed-data labelled text", msg: top + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(fakeSigned(oidData, []byte(envelopedEntity(env)))), want: smime.Refused},
		{name: "refuse pkcs7 without cms", msg: top + p7m("application/pkcs7-mime; smime-type=enveloped-data", []byte("hello, world")), want: smime.Refused, reason: "holds no CMS"},
		{name: "refuse unparsable pkcs7 content-type", msg: top + "Content-Type: application/pkcs7-mime; smime-type=\"enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(env), want: smime.Refused, reason: "does not parse"},
		{name: "refuse unbalanced comment", msg: top + "Content-Type: application/pkcs7-mime (; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(env), want: smime.Refused, reason: "does not parse"},
		{name: "refuse message/partial", msg: top + "Content-Type: message/partial; id=x; number=1\r\n\r\nx\r\n", want: smime.Refused},
		{name: "refuse base64 multipart", msg: top + "Content-Type: multipart/mixed; boundary=m\r\nContent-Transfer-Encoding: base64\r\n\r\nLS1tLS0K\r\n", want: smime.Refused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := smime.Classify([]byte(tt.msg))
			if c.Class != tt.want {
				t.Fatalf("class %v (%s), want %v", c.Class, c.Reason, tt.want)
			}
			if c.Class == smime.Refused && c.Reason == "" {
				t.Fatal("refused without a reason")
			}
			if !strings.Contains(c.Reason, tt.reason) {
				t.Errorf("reason %q, want it to mention %q", c.Reason, tt.reason)
			}
			if (c.Class == smime.ClientEncrypted || c.Class == smime.SignedOverEncrypted) && len(c.Envelope) == 0 {
				t.Error("no envelope")
			}
			if c.Class == smime.SignedOverEncrypted && !strings.Contains(c.Reason, "sign inside the encryption") {
				t.Errorf("signed-over-encrypted reason %q does not say what to do", c.Reason)
			}
		})
	}
}

// uuencode is a uuencoded block as mail clients show it as an attachment.
func uuencode(name string, b []byte) string {
	enc := func(c byte) byte {
		if c == 0 {
			return '`'
		}
		return c + ' '
	}
	var s strings.Builder
	s.WriteString("begin 644 " + name + "\r\n")
	for len(b) > 0 {
		n := min(45, len(b))
		line := append([]byte{}, b[:n]...)
		b = b[n:]
		s.WriteByte(enc(byte(n)))
		for len(line)%3 != 0 {
			line = append(line, 0)
		}
		for i := 0; i < len(line); i += 3 {
			s.WriteByte(enc(line[i] >> 2))
			s.WriteByte(enc((line[i]<<4 | line[i+1]>>4) & 63))
			s.WriteByte(enc((line[i+1]<<2 | line[i+2]>>6) & 63))
			s.WriteByte(enc(line[i+2] & 63))
		}
		s.WriteString("\r\n")
	}
	return s.String() + "`\r\nend\r\n"
}

func qpEncode(b []byte) string {
	var s strings.Builder
	for i, c := range b {
		if i > 0 && i%24 == 0 {
			s.WriteString("=\r\n")
		}
		s.WriteString("=" + strings.ToUpper(string("0123456789abcdef"[c>>4])+string("0123456789abcdef"[c&15])))
	}
	return s.String() + "\r\n"
}

// TestClassifyOpenSSL classifies what OpenSSL makes, BER with indefinite lengths included: an
// encrypted message, the same signed over it (opaque and detached), and signed plain mail.
func TestClassifyOpenSSL(t *testing.T) {
	interop.Need(t, "openssl")
	dir := t.TempDir()
	key, cert := filepath.Join(dir, "u.key"), filepath.Join(dir, "u.pem")
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		return string(out)
	}
	run("", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=u/emailAddress=u@example.test", "-keyout", key, "-out", cert)
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	hdr := "From: u@example.test\r\nTo: v@example.test\r\n"
	encrypted := run(text, "cms", "-encrypt", "-aes256", cert)
	streamed := run(text, "cms", "-encrypt", "-stream", "-aes-256-gcm", cert)
	tests := []struct {
		name string
		msg  string
		want smime.Class
	}{
		{"encrypted", hdr + encrypted, smime.ClientEncrypted},
		{"encrypted gcm stream", hdr + streamed, smime.ClientEncrypted},
		{"signed opaque over encrypted", hdr + run(encrypted, "cms", "-sign", "-nodetach", "-signer", cert, "-inkey", key), smime.SignedOverEncrypted},
		{"signed opaque stream over encrypted", hdr + run(streamed, "cms", "-sign", "-nodetach", "-stream", "-signer", cert, "-inkey", key), smime.SignedOverEncrypted},
		{"signed detached over encrypted", hdr + run(encrypted, "cms", "-sign", "-signer", cert, "-inkey", key), smime.SignedOverEncrypted},
		{"signed opaque stream plain", hdr + run(text, "cms", "-sign", "-nodetach", "-stream", "-signer", cert, "-inkey", key), smime.Plain},
		{"signed detached plain", hdr + run(text, "cms", "-sign", "-signer", cert, "-inkey", key), smime.Plain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := smime.Classify([]byte(tt.msg))
			if c.Class != tt.want {
				t.Fatalf("class %v (%s), want %v\n%.600s", c.Class, c.Reason, tt.want, tt.msg)
			}
		})
	}
}

// FuzzClassify: no panic, a reason for every refusal, an envelope for every envelope class.
func FuzzClassify(f *testing.F) {
	env := fakeEnvelope(false)
	detached := fakeSigned(oidData, nil)
	for _, s := range []string{
		top + text,
		top + envelopedEntity(env),
		top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSignedBER(oidData, []byte(envelopedEntity(env)))),
		top + signedMultipart(envelopedEntity(env), detached),
		top + multipart("multipart/mixed", "m", text, "Content-Type: message/rfc822\r\n\r\n"+top+envelopedEntity(env)),
		top + p7m("Application/X-PKCS7-MIME (c) ; smime-type*0=\"envel\"; smime-type*1=\"oped-data\"", env),
		top + "Content-Type: text/plain\r\n\r\n" + b64(env),
		top + "Content-Type: text/plain\r\nContent-Type: text/html\r\n\r\nx\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := smime.Classify(msg)
		switch c.Class {
		case smime.Refused:
			if c.Reason == "" {
				t.Fatal("refused without a reason")
			}
		case smime.ClientEncrypted, smime.SignedOverEncrypted:
			if len(c.Envelope) == 0 {
				t.Fatal("envelope class without an envelope")
			}
		case smime.Plain:
		default:
			t.Fatalf("class %v", c.Class)
		}
	})
}
