package dkim_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"appliance/dkim"
	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	os.Exit(code)
}

const pkg = "Received: from client.example.com by relay; Thu, 3 Dec 2026 07:00:00 +0000\r\n" +
	"From: Alice <alice@example.com>\r\n" +
	"To: bob@example.org\r\n" +
	"Cc: carol@example.net\r\n" +
	"Subject: quarterly\r\n" +
	" figures\r\n" +
	"Date: Thu, 3 Dec 2026 07:00:00 +0000\r\n" +
	"Message-ID: <1@example.com>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"X-Mailer: test\r\n" +
	"\r\n" +
	"MIIBuwYJKoZIhvcNAQcDoIIBrDCCAagCAQAxggFj\r\n" +
	"AAECAwQ=\r\n"

// verifier runs dkimpy (python3-dkim) over a message with the records of keys served from a
// file, not DNS. It returns the verifier's output and whether every signature verified.
type verifier struct {
	t    *testing.T
	dns  string
	keys map[string]string
}

func newVerifier(t *testing.T, keys []dkim.Key) *verifier {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		ci.Skipf(t, "python3 missing: install python3-dkim (scripts/deps.sh)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import dkim, nacl").Run(); err != nil {
		ci.Skipf(t, "python3-dkim or python3-nacl missing (scripts/deps.sh): %v", err)
	}
	recs := map[string]string{}
	for _, k := range keys {
		r, err := dkim.Record(k.Signer.Public())
		if err != nil {
			t.Fatal(err)
		}
		recs[dkim.RecordName(k.Selector, k.Domain)] = r
	}
	b, _ := json.Marshal(recs)
	p := filepath.Join(t.TempDir(), "dns.json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return &verifier{t: t, dns: p, keys: recs}
}

func (v *verifier) verify(msg string) (string, bool) {
	v.t.Helper()
	cmd := exec.Command("/usr/bin/python3", "testdata/dkimverify.py", v.dns)
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if _, exit := err.(*exec.ExitError); err != nil && !exit {
		v.t.Fatal(err)
	}
	return string(out), err == nil
}

// hsmSigners are an RSA key (alice) and an Ed25519 key made for the test, both found on the
// SoftHSM2 token through the hsm package, as the daemon finds [[dkim]] keys.
func hsmSigners(t *testing.T) (rsaKey, edKey crypto.Signer) {
	t.Helper()
	env := softhsmtest.Setup(t)
	// crypto11 opens the module first: it refuses one something else initialised.
	tok, err := hsm.Open(hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tok.Close() })
	ctx := context.Background()
	if rsaKey, err = tok.Signer(ctx, "pkcs11:token=appliance;object=alice"); err != nil {
		t.Fatal(err)
	}
	softhsmtest.GenerateEd25519(t, env, "dkim-ed1")
	if edKey, err = tok.Signer(ctx, "pkcs11:token=appliance;object=dkim-ed1"); err != nil {
		t.Fatal(err)
	}
	return rsaKey, edKey
}

var hTag = regexp.MustCompile(`[; ]h=([^;]*);`)

// TestSignVerify: signatures made with keys on SoftHSM2 (RSA and Ed25519, both through the hsm
// package) verify with dkimpy; the h= list is the package's own fields with From oversigned;
// a changed signed field, an added From or a changed body fails; a changed unsigned field does
// not.
func TestSignVerify(t *testing.T) {
	rsaKey, edKey := hsmSigners(t)
	keys := []dkim.Key{
		{Domain: "example.com", Selector: "rsa1", Signer: rsaKey},
		{Domain: "example.com", Selector: "ed1", Signer: edKey},
	}
	s, err := dkim.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, keys)
	field, err := s.Sign(strings.NewReader(pkg))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(field, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures, want one per key:\n%s", n, field)
	}
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.com", "s=rsa1", "s=ed1"} {
		if !strings.Contains(strings.ReplaceAll(field, "\r\n ", ""), want) {
			t.Errorf("signature lacks %s:\n%s", want, field)
		}
	}
	unfolded := regexp.MustCompile(`\r\n[ \t]+`).ReplaceAllString(field, " ")
	hs := hTag.FindAllStringSubmatch(unfolded, -1)
	if len(hs) != 2 {
		t.Fatalf("%d h= tags in\n%s", len(hs), unfolded)
	}
	for _, m := range hs {
		got := strings.ReplaceAll(strings.ReplaceAll(m[1], " ", ""), "\t", "")
		want := "From:From:Subject:Date:Message-ID:To:Cc:MIME-Version:Content-Type:Content-Transfer-Encoding"
		if got != want {
			t.Errorf("h=%s, want %s", got, want)
		}
	}
	signed := field + pkg
	out, ok := v.verify(signed)
	if !ok || strings.Count(out, "ok example.com") != 2 {
		t.Fatalf("dkimpy does not verify:\n%s", out)
	}
	if !strings.Contains(out, "queried rsa1._domainkey.example.com.") && !strings.Contains(out, "rsa1._domainkey.example.com") {
		t.Fatalf("dkimpy did not ask for the key record:\n%s", out)
	}
	for name, changed := range map[string]string{
		"signed field changed": strings.Replace(signed, "Subject: quarterly", "Subject: Quarterly", 1),
		"folded part changed":  strings.Replace(signed, " figures\r\n", " figures!\r\n", 1),
		"Cc changed":           strings.Replace(signed, "carol@example.net", "eve@example.net", 1),
		"From added below":     strings.Replace(signed, "To: bob", "From: eve@example.com\r\nTo: bob", 1),
		"From added on top":    "From: eve@example.com\r\n" + signed,
		"body changed":         strings.Replace(signed, "AAECAwQ=", "AAECAwR=", 1),
		"content type changed": strings.Replace(signed, "smime-type=enveloped-data", "smime-type=signed-data", 1),
		"signed field removed": strings.Replace(signed, "Message-ID: <1@example.com>\r\n", "", 1),
	} {
		if out, ok := v.verify(changed); ok || strings.Contains(out, "ok example.com") {
			t.Errorf("%s: still verifies:\n%s", name, out)
		}
	}
	// Relaxed canonicalisation and unsigned fields: these keep the signature.
	for name, same := range map[string]string{
		"unsigned field changed": strings.Replace(signed, "X-Mailer: test", "X-Mailer: other", 1),
		"trace field changed":    strings.Replace(signed, "by relay", "by mx", 1),
		"whitespace in a field":  strings.Replace(signed, "Subject: quarterly", "Subject:   quarterly", 1),
		"trace field added":      "Received: from relay by mx; Thu, 3 Dec 2026 07:00:01 +0000\r\n" + signed,
	} {
		if out, ok := v.verify(same); !ok {
			t.Errorf("%s: no longer verifies:\n%s", name, out)
		}
	}
	// LF line ends, as a file on disk may have them, sign the same message.
	lf, err := s.Sign(strings.NewReader(strings.ReplaceAll(pkg, "\r\n", "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := v.verify(lf + pkg); !ok {
		t.Errorf("LF input: %s", out)
	}
}

// TestWriterToAndDomains: the queue's io.WriterTo form, a subdomain using its parent's key, and
// a From domain without a key.
func TestWriterToAndDomains(t *testing.T) {
	rsaKey, _ := hsmSigners(t)
	keys := []dkim.Key{{Domain: "example.com", Selector: "sel", Signer: rsaKey}}
	s, err := dkim.New(keys)
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, keys)
	sub := strings.Replace(pkg, "alice@example.com", "alice@mail.EXAMPLE.com", 1)
	wt, err := s.WriterTo(bytes.NewBufferString(sub))
	if err == nil {
		// A bytes.Buffer is drained by its first WriteTo: the package must write twice.
		var b bytes.Buffer
		wt.WriteTo(&b)
		if strings.Contains(b.String(), "From: Alice") {
			t.Fatal("a drained buffer wrote the package again")
		}
	}
	wt, err = s.WriterTo(stringWriterTo(sub))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := wt.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "DKIM-Signature:") || !strings.HasSuffix(b.String(), sub) {
		t.Fatalf("written:\n%s", b.String())
	}
	if out, ok := v.verify(b.String()); !ok || !strings.Contains(out, "ok example.com sel rsa-sha256") {
		t.Fatalf("subdomain with the parent's key:\n%s", out)
	}
	if _, err := s.Sign(strings.NewReader(strings.Replace(pkg, "alice@example.com", "alice@example.org", 1))); !errors.Is(err, dkim.ErrNoKey) {
		t.Fatalf("domain without a key: %v", err)
	}
	// An outside From with a Sender of the domain (a list post): the Sender's domain signs.
	onBehalf := strings.Replace(pkg, "From: Alice <alice@example.com>\r\n", "From: olivia@example.org\r\nSender: team@example.com\r\n", 1)
	f2, err := s.Sign(strings.NewReader(onBehalf))
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := v.verify(f2 + onBehalf); !ok || !strings.Contains(out, "ok example.com sel") {
		t.Fatalf("signed on behalf:\n%s", out)
	}
	if !strings.Contains(strings.ReplaceAll(f2, "\r\n ", ""), "Sender") {
		t.Fatalf("Sender not signed:\n%s", f2)
	}
	for _, bad := range []string{strings.Replace(pkg, "From:", "X-From:", 1), "From: a@example.com\r\nno colon\r\n\r\nbody", "From: a@example.com\r\n"} {
		if _, err := s.Sign(strings.NewReader(bad)); !errors.Is(err, dkim.ErrUnsignable) {
			t.Errorf("%.30q: %v, want ErrUnsignable", bad, err)
		}
	}
	hdr, body, _ := strings.Cut(pkg, "\r\n\r\n")
	f, err := s.SignHeader([]byte(hdr), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if out, ok := v.verify(f + pkg); !ok {
		t.Fatalf("SignHeader:\n%s", out)
	}
}

type stringWriterTo string

func (s stringWriterTo) WriteTo(w io.Writer) (int64, error) {
	n, err := io.WriteString(w, string(s))
	return int64(n), err
}

func TestRecord(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	r, err := dkim.Record(pub)
	if err != nil || !strings.HasPrefix(r, "v=DKIM1; k=ed25519; p=") || len(r) != len("v=DKIM1; k=ed25519; p=")+44 {
		t.Fatalf("%q %v", r, err)
	}
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("A", 400)
	z := dkim.ZoneLine("sel", "example.com", long)
	if !strings.HasPrefix(z, `sel._domainkey.example.com. IN TXT ( "v=DKIM1; k=rsa; p=`) || strings.Count(z, `"`) != 4 {
		t.Fatalf("%s", z)
	}
	for _, p := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(z, -1) {
		if len(p[1]) > 255 {
			t.Fatalf("string of %d bytes", len(p[1]))
		}
	}
}
