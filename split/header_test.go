package split

import (
	"errors"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// render applies a package's edits to the submitted header.
func render(t *testing.T, h textproto.Header, e HeaderEdits) string {
	t.Helper()
	h = h.Copy()
	e.Apply(&h)
	var b strings.Builder
	if err := textproto.WriteHeader(&b, h); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestHeaderPolicy: the allowlist, per package. carol is a hidden (Bcc)
// recipient; bob is in To. Every case checks what bob's package (0) and
// carol's (1) carry.
func TestHeaderPolicy(t *testing.T) {
	tests := []struct {
		name       string
		extra      string   // fields added to a plain header
		vis, hid   []string // substrings the visible / carol's header must contain
		visAbsent  []string
		hidAbsent  []string
		visDropped string // a substring of one of Dropped of the visible package
	}{
		{name: "ok known fields kept", extra: "Date: Sat, 1 Jan 2026 10:00:00 +0000\nMessage-ID: <1@a.test>\nIn-Reply-To: <0@a.test>\nOrganization: Org\n",
			vis: []string{"Date: Sat", "Message-ID: <1@a.test>", "In-Reply-To: <0@a.test>", "Organization: Org"}},
		{name: "ok every x- field dropped", extra: "X-Mailer: m\nX-Note: none\n", visAbsent: []string{"X-Mailer", "X-Note"}, hidAbsent: []string{"X-Mailer"}, visDropped: "X-Mailer"},
		{name: "ok envelope and receipt fields dropped", extra: "Return-Path: <alice@example.test>\nEnvelope-To: carol@y.test\nX-Envelope-Recipient: carol@y.test\n" +
			"Original-Recipient: rfc822;carol@y.test\nX-Rcpt-To: carol@y.test\nDisposition-Notification-To: alice@example.test\nReturn-Receipt-To: alice@example.test\nX-Confirm-Reading-To: alice@example.test\n",
			visAbsent: []string{"carol", "Return-Path", "Disposition", "Receipt", "Envelope"}, hidAbsent: []string{"Disposition", "Receipt"}},
		{name: "ok unknown field without an address kept", extra: "Thread-Hint: plain words\n", vis: []string{"Thread-Hint: plain words"}},
		{name: "ok unknown field with an address dropped", extra: "Mail-Followup-To: bob@x.test\n", visAbsent: []string{"Mail-Followup-To"}, hidAbsent: []string{"Mail-Followup-To"}, visDropped: "Mail-Followup-To (unknown"},
		{name: "ok subject naming the hidden recipient goes only to her", extra: "Subject: for carol@y.test\n",
			visAbsent: []string{"carol"}, hid: []string{"Subject: for carol@y.test"}, visDropped: "Subject (names a hidden"},
		{name: "ok quoted local part", extra: "Comments: ask \"carol\"@Y.TEST\n", visAbsent: []string{"Comments"}, hid: []string{"Comments:"}},
		{name: "ok comment inside the address", extra: "Keywords: carol(x) @ y.test\n", visAbsent: []string{"Keywords"}},
		{name: "ok white space around the at sign", extra: "Keywords: mail carol @ y . test\n", visAbsent: []string{"Keywords"}},
		{name: "ok encoded word", extra: "Keywords: =?utf-8?q?carol=40y=2Etest?=\n", visAbsent: []string{"Keywords"}, hid: []string{"Keywords"}},
		{name: "ok encoded word with an unknown charset", extra: "Keywords: =?x-weird?b?Y2Fyb2xAeS50ZXN0?=\n", visAbsent: []string{"Keywords"}},
		{name: "ok several in one clause", extra: "Received: from a by b for <bob@x.test>, <carol@y.test>; Sat, 1 Jan 2026\n",
			vis: []string{"Received: from a by b; Sat"}, visAbsent: []string{"carol", "for <"}, visDropped: "for clause removed"},
		{name: "ok received naming her in a comment dropped", extra: "Received: from a (carol@y.test) by b; Sat, 1 Jan 2026\n",
			visAbsent: []string{"Received"}, hid: []string{"Received: from a (carol@y.test)"}},
		{name: "ok to with her in a comment rebuilt", extra: "Cc: dave@m.test (copy carol@y.test), \"carol@y.test\" <erin@m.test>\n",
			vis: []string{"Cc: <dave@m.test>, <erin@m.test>"}, visAbsent: []string{"carol"}, visDropped: "Cc (rebuilt"},
		{name: "ok a field naming only visible people is kept", extra: "Subject: ask Bob@X.test or alice@example.test\n", vis: []string{"Subject: ask Bob@X.test"}},
		{name: "ok a field naming someone outside the message is dropped", extra: "Subject: ask zed@q.test\n", visAbsent: []string{"zed"}, hidAbsent: []string{"zed"}},
		{name: "ok reply-to naming the hidden recipient goes only to her", extra: "Reply-To: Carol <CAROL@Y.TEST>\n",
			visAbsent: []string{"carol", "CAROL", "Reply-To"}, hid: []string{"Reply-To:"}},
		{name: "ok reply-to naming the sender is kept", extra: "Reply-To: alice@example.test\n", vis: []string{"Reply-To:"}, hid: []string{"Reply-To:"}},
		{name: "ok message identifiers are not addresses", extra: "References: <1@x.test> <2@y.test>\nIn-Reply-To: <2@y.test>\n", vis: []string{"References: <1@x.test>", "In-Reply-To: <2@y.test>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Header: header(base + "To: bob@x.test\nBcc: carol@y.test\n" + strings.ReplaceAll(tt.extra, "Subject: hi\n", "")),
				RcptTo: []string{"bob@x.test", "carol@y.test", "dave@m.test", "erin@m.test"},
				Certs:  certsFor("bob@x.test", "carol@y.test"),
				Policy: Policy{MissingCert: Drop},
			}
			if strings.Contains(tt.extra, "Subject:") {
				in.Header.Del("Subject")
				in.Header.Add("Subject", strings.TrimSpace(strings.TrimPrefix(strings.SplitN(tt.extra, "\n", 2)[0], "Subject:")))
			}
			p, err := Make(in)
			if err != nil {
				t.Fatalf("Make() error = %v", err)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("CheckPrivacy() = %v", err)
			}
			vis, hid := render(t, in.Header, p.Packages[0].Edits), render(t, in.Header, p.Packages[1].Edits)
			for _, w := range tt.vis {
				if !strings.Contains(vis, w) {
					t.Errorf("visible header lacks %q:\n%s", w, vis)
				}
			}
			for _, w := range tt.hid {
				if !strings.Contains(hid, w) {
					t.Errorf("hidden header lacks %q:\n%s", w, hid)
				}
			}
			for _, a := range append([]string{"Bcc"}, tt.visAbsent...) {
				if strings.Contains(vis, a) {
					t.Errorf("visible header has %q:\n%s", a, vis)
				}
			}
			for _, a := range tt.hidAbsent {
				if strings.Contains(hid, a) {
					t.Errorf("hidden header has %q:\n%s", a, hid)
				}
			}
			if tt.visDropped != "" && !strings.Contains(strings.Join(p.Packages[0].Edits.Dropped, "|"), tt.visDropped) {
				t.Errorf("Dropped = %q, want one with %q", p.Packages[0].Edits.Dropped, tt.visDropped)
			}
		})
	}
}

// TestHeaderRefusals: what Make refuses rather than guess.
func TestHeaderRefusals(t *testing.T) {
	tests := []struct {
		name  string
		hdr   string
		want  error
		field string
	}{
		{"fail two from fields", base + "From: mallory@evil.test\nTo: bob@x.test\n", ErrDuplicateField, "From"},
		{"fail two to fields", base + "To: bob@x.test\nTo: carol@y.test\n", ErrDuplicateField, "To"},
		{"fail two bcc fields", base + "To: bob@x.test\nBcc: carol@y.test\nBcc: dave@m.test\n", ErrDuplicateField, "Bcc"},
		{"fail two subjects", base + "Subject: again\nTo: bob@x.test\n", ErrDuplicateField, "Subject"},
		{"fail two message-ids", base + "Message-ID: <1@a>\nMessage-Id: <2@a>\nTo: bob@x.test\n", ErrDuplicateField, "Message-Id"},
		{"fail content field names a hidden recipient", base + "To: bob@x.test\nBcc: carol@y.test\nContent-Description: for carol@y.test\n", ErrHiddenInContent, "Content-Description"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{Header: header(tt.hdr), RcptTo: []string{"bob@x.test", "carol@y.test"}, Certs: certsFor("bob@x.test", "carol@y.test")}
			_, err := Make(in)
			var fe *FieldError
			if !errors.Is(err, tt.want) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Make() error = %v, want %v on %s", err, tt.want, tt.field)
			}
		})
	}
	// Resent- fields repeat legitimately, one per block.
	in := Input{Header: header("Resent-From: alice@example.test\nResent-To: bob@x.test\nResent-From: alice@example.test\nResent-To: dave@m.test\n" + base + "To: erin@m.test\n"),
		RcptTo: []string{"bob@x.test"}, Certs: certsFor("bob@x.test")}
	if _, err := Make(in); err != nil {
		t.Fatalf("two resent blocks: %v", err)
	}
}

// TestOriginators: every instance of every originator field.
func TestOriginators(t *testing.T) {
	h := header("Resent-From: Rs <rs@a.test>\nResent-Sender: rsnd@a.test\nFrom: a@a.test, b@b.test\nSender: s@a.test\nResent-From: old@a.test\nTo: bob@x.test\n")
	got, err := Originators(h)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "rs@a.test,rsnd@a.test,a@a.test,b@b.test,s@a.test,old@a.test" {
		t.Fatalf("Originators() = %q", got)
	}
	if _, err := Originators(header("From: a@a.test\nSender: not an address\n")); !errors.Is(err, ErrInvalidAddress) {
		t.Fatalf("unparsable Sender: %v", err)
	}
}

// TestResent: RFC 5322 section 3.6.6. The newest (topmost) block names the
// recipients of this copy; the original To stays readable text.
func TestResent(t *testing.T) {
	hdr := "Resent-Date: Sun, 2 Jan 2026 10:00:00 +0000\nResent-From: alice@example.test\nResent-To: dave@m.test\nResent-Bcc: erin@m.test\n" +
		"Received: from a by b; Sat, 1 Jan 2026\n" +
		"Resent-Date: Sat, 1 Jan 2026 10:00:00 +0000\nResent-From: alice@example.test\nResent-To: frank@x.test\nResent-Bcc: grace@y.test\n" +
		base + "To: bob@x.test\nCc: carol@y.test\nBcc: heidi@z.test\n"
	in := Input{
		Header: header(hdr),
		RcptTo: []string{"dave@m.test", "erin@m.test", "bob@x.test"},
		Certs:  certsFor("dave@m.test", "erin@m.test", "bob@x.test"),
		Policy: Policy{KeepBcc: true},
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(summary(p), "\n")
	want := "vis compat [dave@m.test] {dave@m.test//0}\nhid compat [erin@m.test] {erin@m.test//0} bcc=erin@m.test\nhid compat [bob@x.test] {bob@x.test//0}"
	if got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	vis := render(t, in.Header, p.Packages[0].Edits)
	for _, w := range []string{"To: bob@x.test", "Cc: carol@y.test", "Resent-To: frank@x.test"} {
		if !strings.Contains(vis, w) {
			t.Errorf("visible header lacks %q:\n%s", w, vis)
		}
	}
	for _, a := range []string{"erin", "grace", "heidi", "Bcc"} {
		if strings.Contains(vis, a) {
			t.Errorf("visible header has %q:\n%s", a, vis)
		}
	}
	erin := render(t, in.Header, p.Packages[1].Edits)
	if !strings.HasPrefix(erin, "Resent-Bcc: erin@m.test\r\nResent-Date: Sun") || strings.Contains(erin, "grace") || strings.Contains(erin, "heidi") {
		t.Errorf("erin's header:\n%s", erin)
	}
	// bob is in the original To but not in the newest block: his receipt
	// of this copy is his own (his certificate joins no other package).
	if len(p.Packages[2].Certs) != 1 || p.Packages[2].Certs[0].Owner != "bob@x.test" {
		t.Errorf("bob's package: %+v", p.Packages[2])
	}
}

// TestCheckPrivacyHeaders: the oracle sees a leak through any kept field.
func TestCheckPrivacyHeaders(t *testing.T) {
	in := Input{
		Header: header("X-Trace: carol@y.test\nKeywords: =?utf-8?q?carol=40y.test?=\n" + base + "To: bob@x.test (not \"carol\"@y.test)\nBcc: carol@y.test\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
	}
	good, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, good); err != nil {
		t.Fatalf("good plan rejected: %v", err)
	}
	for _, tt := range []struct {
		name string
		add  FieldEdit
	}{
		{"fail x- field kept", FieldEdit{Key: "X-Trace", N: 0}},
		{"fail encoded word kept", FieldEdit{Key: "Keywords", N: 0}},
		{"fail comment in to kept", FieldEdit{Key: "To", N: 0}},
		{"fail new field naming her", FieldEdit{Key: "Comments", N: -1, Value: "carol (c) @ y.test"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := *good
			p.Packages = append([]Package(nil), good.Packages...)
			p.Packages[0].Edits.Fields = append(append([]FieldEdit(nil), good.Packages[0].Edits.Fields...), tt.add)
			if err := CheckPrivacy(in, &p); !errors.Is(err, ErrPrivacy) {
				t.Fatalf("CheckPrivacy() = %v, want ErrPrivacy", err)
			}
		})
	}
}

// TestEightBitAddresses: bytes >= 0x80 in a field value are address characters, and a byte
// that is not UTF-8 is judged as U+FFFD, as normalization reads it. "0000\xff@0" is then an
// address of nobody's, in Received, Subject or a comment of To, and the field goes from the
// package of "0@0" (fuzz finding: the oracle read it as an address, split did not). A valid
// 8-bit local part that is a visible recipient's stays.
func TestEightBitAddresses(t *testing.T) {
	for _, cs := range []bool{false, true} {
		for _, field := range []string{"Received: 0000000000000000000000\xff@0", "Subject: re \xff0@0 x", "Subject: =?x?q?=FF0@0?=", "Comments: \xfe\xff@0"} {
			h := header(field)
			in := Input{Header: h, RcptTo: []string{"0@0"}, Certs: map[string][]Cert{"0@0": {{ID: "c", Owner: "0@0", Profile: "compat"}}},
				Policy: Policy{CaseSensitiveLocalPart: cs}}
			p, err := Make(in)
			if err != nil {
				t.Fatalf("%q: %v", field, err)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Errorf("cs=%v %q: %v", cs, field, err)
			}
			key, _, _ := strings.Cut(field, ":")
			if got := render(t, h, p.Packages[0].Edits); strings.Contains(got, key+":") {
				t.Errorf("cs=%v: %q kept:\n%s", cs, field, got)
			}
		}
	}
	h := header("To: j\xc3\xb6rg@x.test\nSubject: for j\xc3\xb6rg@x.test")
	in := Input{Header: h, RcptTo: []string{"j\xc3\xb6rg@x.test"}, Certs: map[string][]Cert{"j\xc3\xb6rg@x.test": {{ID: "c", Owner: "j\xc3\xb6rg@x.test", Profile: "compat"}}}}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatal(err)
	}
	if got := render(t, h, p.Packages[0].Edits); !strings.Contains(got, "Subject: for j\xc3\xb6rg@x.test") {
		t.Errorf("a visible recipient's 8-bit address dropped the Subject:\n%s", got)
	}
}

// TestAddressReadsAsAnother: an address whose own spelling reads as someone else's
// ("bob b"@x.test holds b@x.test once the quotes go) cannot be made clean by rebuilding its
// field, so the field goes from every package that may not see that someone (fuzz finding).
func TestAddressReadsAsAnother(t *testing.T) {
	h := header("From: alice@example.test\nTo: \"bob b\"@x.test (c)\nBcc: frank@z.test\nSubject: s")
	in := Input{Header: h, MailFrom: "alice@example.test", RcptTo: []string{"berin@x.test", "frank@z.test"},
		Certs: map[string][]Cert{"frank@z.test": {{ID: "f", Owner: "frank@z.test", Profile: "compat"}}, "berin@x.test": {{ID: "b", Owner: "berin@x.test", Profile: "compat"}}}}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatal(err)
	}
	for _, pk := range p.Packages {
		if got := render(t, h, pk.Edits); strings.Contains(got, "bob b") || !strings.Contains(strings.Join(pk.Edits.Dropped, ","), "To (an address in it reads") {
			t.Errorf("package for %v:\n%s\ndropped %v", pk.Recipients, got, pk.Edits.Dropped)
		}
	}
}
