package smime

import (
	"bufio"
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func readHeader(t *testing.T, s string) textproto.Header {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s + "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func fieldOrder(h textproto.Header) []string {
	var out []string
	for f := h.Fields(); f.Next(); {
		out = append(out, f.Key()+": "+f.Value())
	}
	return out
}

func TestObscureOuter(t *testing.T) {
	h := readHeader(t, "From: Alice <alice@a.test>\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nKeywords: secret\r\n"+
		"To: bob@b.test\r\nComments: also secret\r\nDate: Sat, 28 Nov 2026 15:00:00 +0000\r\n")
	ObscureOuter(&h)
	got := strings.Join(fieldOrder(h), "|")
	want := "From: Alice <alice@a.test>|Subject: [...]|To: bob@b.test|Date: Sat, 28 Nov 2026 15:00:00 +0000"
	if got != want {
		t.Fatalf("obscured header\n got %s\nwant %s", got, want)
	}
}

func TestProtectCipherLegacyDisplay(t *testing.T) {
	entity := []byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo.\r\n")
	prot := readHeader(t, "From: Alice <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nMessage-ID: <m@a.test>\r\n")
	outer := prot.Copy()
	ObscureOuter(&outer)
	out, err := Protect(entity, prot, HPCipher, outer, true)
	if err != nil {
		t.Fatal(err)
	}
	if !isCanonical(out) {
		t.Fatalf("payload is not canonical: %q", out)
	}
	if !bytes.HasSuffix(out, []byte("\r\n\r\nSubject: Grüße\r\n\r\nHallo.\r\n")) {
		t.Fatalf("no legacy display element before the body:\n%s", out)
	}
	p, err := ReadProtected(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != HPCipher || !p.Legacy {
		t.Fatalf("mode %q legacy %v", p.Mode, p.Legacy)
	}
	if got := strings.Join(fieldOrder(p.Header), "|"); got != "From: Alice <alice@a.test>|To: <bob@b.test>|Subject: =?UTF-8?B?R3LDvMOfZQ==?=|Message-Id: <m@a.test>" {
		t.Fatalf("protected header %s", got)
	}
	want := []string{"From: Alice <alice@a.test>", "To: <bob@b.test>", "Subject: [...]", "Message-Id: <m@a.test>"}
	if strings.Join(p.Outer, "|") != strings.Join(want, "|") {
		t.Fatalf("HP-Outer %q, want %q", p.Outer, want)
	}
	// The entity's own Content-* fields stay, once each.
	if bytes.Count(out, []byte("Content-Transfer-Encoding: 8bit")) != 1 || bytes.Count(out, []byte("Content-Type:")) != 1 {
		t.Fatalf("content fields changed:\n%s", out)
	}
}

func TestProtectClear(t *testing.T) {
	entity := []byte("Content-Type: text/plain\r\n\r\nHallo.\r\n")
	prot := readHeader(t, "From: alice@a.test\r\nSubject: plain\r\n")
	out, err := Protect(entity, prot, HPClear, prot, true)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ReadProtected(out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode != HPClear || p.Legacy || len(p.Outer) != 0 {
		t.Fatalf("signed-only payload: mode %q, legacy %v, HP-Outer %q", p.Mode, p.Legacy, p.Outer)
	}
	if !bytes.HasSuffix(out, []byte("\r\n\r\nHallo.\r\n")) || bytes.Count(out, []byte("Subject:")) != 1 {
		t.Fatalf("signed-only body changed:\n%s", out)
	}
}

// TestProtectOtherBodies: a multipart body keeps its boundary, and a base64 text body is left as
// it is, with no legacy display element (it would have to be re-encoded).
func TestProtectOtherBodies(t *testing.T) {
	prot := readHeader(t, "From: alice@a.test\r\nSubject: s\r\n")
	for name, entity := range map[string]string{
		"multipart": "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n--b1--\r\n",
		"base64":    "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nSGFsbG8=\r\n",
		"7bit utf8": "Content-Type: text/plain; charset=us-ascii\r\n\r\nx\r\n",
	} {
		body := entity[strings.Index(entity, "\r\n\r\n")+4:]
		out, err := Protect([]byte(entity), prot, HPCipher, prot, true)
		if err != nil {
			t.Fatal(name, err)
		}
		p, err := ReadProtected(out)
		if err != nil {
			t.Fatal(name, err)
		}
		legacy := name != "base64" // an ASCII subject in an ASCII body
		if p.Mode != HPCipher || p.Legacy != legacy {
			t.Fatalf("%s: mode %q legacy %v", name, p.Mode, p.Legacy)
		}
		if !legacy && !bytes.HasSuffix(out, []byte("\r\n\r\n"+body)) {
			t.Fatalf("%s: body changed:\n%s", name, out)
		}
		oh := readHeader(t, string(out[:bytes.Index(out, []byte("\r\n\r\n"))+2]))
		mt, params, err := ParseContentType(oh.Get("Content-Type"))
		if err != nil || params["hp"] != HPCipher || (name == "multipart" && (mt != "multipart/mixed" || params["boundary"] != "b1")) {
			t.Fatalf("%s: content type %s %v %v", name, mt, params, err)
		}
	}
	// A non-ASCII subject cannot go into a 7bit body as it is.
	uprot := readHeader(t, "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\n")
	out, err := Protect([]byte("Content-Type: text/plain; charset=utf-8\r\n\r\nx\r\n"), uprot, HPCipher, uprot, true)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := ReadProtected(out); p.Legacy {
		t.Fatal("a non-ASCII legacy display element went into a 7bit body")
	}
}

// TestHPOuterFolded: a long outer field (a To of many addresses) is recorded in HP-Outer folded
// into lines of at most 78 characters, and reads back as one value.
func TestHPOuterFolded(t *testing.T) {
	var to []string
	for i := range 200 {
		to = append(to, "<user"+strings.Repeat("x", i%7)+"@example.test>")
	}
	outer := readHeader(t, "To: "+strings.Join(to, ",\r\n ")+"\r\nSubject: [...]\r\n")
	out, err := Protect([]byte("Content-Type: text/plain\r\n\r\nx\r\n"), outer, HPCipher, outer, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\r\n") {
		if len(line) > 78 {
			t.Fatalf("line of %d characters: %q", len(line), line)
		}
	}
	p, err := ReadProtected(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Outer) != 2 || unfoldValue(p.Outer[0]) != "To: "+strings.Join(to, ", ") {
		t.Fatalf("HP-Outer read back as %q", p.Outer)
	}
}

// TestProtectLegacyMultipart: in a multipart/mixed whose first part is a multipart/alternative,
// both alternatives get the legacy display element (text first, HTML just inside <body>), the
// attachment does not, and every other byte stays where it was.
func TestProtectLegacyMultipart(t *testing.T) {
	entity := "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\npreamble\r\n" +
		"--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n" +
		"--a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHallo.\r\n" +
		"--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><BODY class=\"x\">\r\n<p>Hallo.</p></body></html>\r\n" +
		"--a--\r\n" +
		"--m\r\nContent-Type: text/plain; name=a.txt\r\nContent-Disposition: attachment\r\n\r\nattached\r\n" +
		"--m--\r\nepilogue\r\n"
	prot := readHeader(t, "Subject: <Jones> & co\r\n")
	out, err := Protect([]byte(entity), prot, HPCipher, prot, true)
	if err != nil {
		t.Fatal(err)
	}
	body := string(out[bytes.Index(out, []byte("\r\n\r\n"))+4:])
	want := "preamble\r\n" +
		"--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n" +
		"--a\r\nContent-Type: text/plain;\r\n charset=utf-8;\r\n hp-legacy-display=1\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Subject: <Jones> & co\r\n\r\nHallo.\r\n" +
		"--a\r\nContent-Type: text/html;\r\n charset=utf-8;\r\n hp-legacy-display=1\r\n\r\n<html><BODY class=\"x\">\r\n" +
		"<div class=\"header-protection-legacy-display\"><pre>Subject: &lt;Jones&gt; &amp; co</pre></div>\r\n<p>Hallo.</p></body></html>\r\n" +
		"--a--\r\n" +
		"--m\r\nContent-Type: text/plain; name=a.txt\r\nContent-Disposition: attachment\r\n\r\nattached\r\n" +
		"--m--\r\nepilogue\r\n"
	if body != want {
		t.Fatalf("body\n got %q\nwant %q", body, want)
	}
	p, err := ReadProtected(out)
	if err != nil || !p.Legacy || p.Mode != HPCipher {
		t.Fatalf("read back: %+v %v", p, err)
	}
}

// TestProtectLegacyNotIntoAttachment: a multipart/mixed whose first part is an attached text
// file gets no legacy display element: the file stays as it was.
func TestProtectLegacyNotIntoAttachment(t *testing.T) {
	entity := "Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n" +
		"--m\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; filename=a.txt\r\n\r\nfile\r\n--m--\r\n"
	prot := readHeader(t, "Subject: s\r\n")
	out, err := Protect([]byte(entity), prot, HPCipher, prot, true)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(out, []byte(entity[strings.Index(entity, "\r\n\r\n"):])) || bytes.Contains(out, []byte("Subject: s\r\n\r\nfile")) {
		t.Fatalf("attachment changed:\n%s", out)
	}
}

// FuzzProtect: Protect never panics, and what it returns reads back as a payload with its mode.
func FuzzProtect(f *testing.F) {
	f.Add([]byte("Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/html\r\n\r\n<body>x\r\n--a--\r\n"))
	f.Add([]byte("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=\r\ny\r\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=m\r\n\r\n--m\r\n\r\n--m\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m--\r\n"))
	prot := textproto.Header{}
	prot.Add("Subject", "=?UTF-8?B?R3LDvMOfZQ==?=")
	f.Fuzz(func(t *testing.T, entity []byte) {
		out, err := Protect(Canonicalize(entity), prot, HPCipher, prot, true)
		if err != nil {
			return
		}
		p, err := ReadProtected(out)
		if err != nil || p.Mode != HPCipher {
			t.Fatalf("payload does not read back: %v %+v", err, p)
		}
	})
}
