package split

import (
	"errors"
	"strings"
	"testing"
)

// Tests that kill mutants gremlins left alive in split (docs/testing.md, "Mutation testing").

// appliedKeys is the field names of package i's header, top to bottom, with the
// value of each Bcc and Resent-Bcc field.
func appliedKeys(t *testing.T, in Input, p *Plan, i int) string {
	t.Helper()
	h := in.Header.Copy()
	p.Packages[i].Edits.Apply(&h)
	var keys []string
	for f := h.Fields(); f.Next(); {
		k := f.Key()
		if strings.HasSuffix(k, "Bcc") {
			k += "=" + f.Value()
		}
		keys = append(keys, k)
	}
	return strings.Join(keys, ",")
}

// TestBccFieldPlace: a hidden package's fresh Bcc field takes the place of
// the first submitted Bcc field, not the top or the bottom of the header.
func TestBccFieldPlace(t *testing.T) {
	tests := []struct {
		name string
		hdr  string
		rcpt []string
		pol  Policy
		pkg  int
		want string
	}{
		{name: "ok bcc in the middle",
			hdr:  "From: alice@example.test\nTo: bob@x.test\nSubject: hi\nBcc: carol@y.test\nDate: 1\n",
			rcpt: []string{"bob@x.test", "carol@y.test"}, pol: Policy{KeepBcc: true}, pkg: 1,
			want: "From,To,Subject,Bcc=carol@y.test,Date"},
		{name: "ok group bcc in the middle",
			hdr:  "From: alice@example.test\nTo: bob@x.test\nSubject: hi\nBcc: carol@y.test, dave@y.test\nDate: 1\n",
			rcpt: []string{"bob@x.test", "carol@y.test", "dave@y.test"}, pol: Policy{KeepBcc: true, Bcc: Group}, pkg: 1,
			want: "From,To,Subject,Bcc=carol@y.test, dave@y.test,Date"},
		{name: "ok bcc on top",
			hdr:  "Bcc: carol@y.test\nFrom: alice@example.test\nTo: bob@x.test\nSubject: hi\n",
			rcpt: []string{"bob@x.test", "carol@y.test"}, pol: Policy{KeepBcc: true}, pkg: 1,
			want: "Bcc=carol@y.test,From,To,Subject"},
		{name: "ok resent bcc in the newest block",
			hdr: "Resent-From: erin@example.test\nResent-To: bob@x.test\nResent-Bcc: carol@y.test\n" +
				"Resent-Date: 2\nFrom: alice@example.test\nTo: frank@z.test\nSubject: hi\n",
			rcpt: []string{"bob@x.test", "carol@y.test"}, pol: Policy{KeepBcc: true}, pkg: 1,
			want: "Resent-Bcc=carol@y.test,Resent-From,Resent-To,Resent-Date,From,To,Subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := Input{Header: header(tt.hdr), RcptTo: tt.rcpt, Certs: certsFor(tt.rcpt...), Policy: tt.pol}
			p, err := Make(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("CheckPrivacy() = %v", err)
			}
			if !p.Packages[tt.pkg].Hidden {
				t.Fatalf("package %d is not hidden: %v", tt.pkg, summary(p))
			}
			if got := appliedKeys(t, in, p, tt.pkg); got != tt.want {
				t.Fatalf("header = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestSelfCopyEnvelopeSender: the self-copy certificate of an envelope sender
// that no header field names is in every package, and the oracle takes that as
// no leak: every recipient learns the envelope sender from Return-Path anyway.
func TestSelfCopyEnvelopeSender(t *testing.T) {
	bounces := cert("bounces@example.test", "", 0)
	in := Input{
		Header:      header(base + "To: bob@x.test\n"),
		MailFrom:    "<bounces@example.test>",
		RcptTo:      []string{"bob@x.test", "carol@y.test"},
		Certs:       certsFor("bob@x.test", "carol@y.test"),
		SenderCerts: []Cert{bounces},
		Policy:      Policy{SelfCopy: true},
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "vis compat [bob@x.test] {bob@x.test//0,bounces@example.test//0}\n" +
		"hid compat [carol@y.test] {carol@y.test//0,bounces@example.test//0}"
	if got := strings.Join(summary(p), "\n"); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("CheckPrivacy() = %v", err)
	}
}

// TestGroupBccListedOutsideEnvelope: in Group mode a hidden package's Bcc
// field lists every Bcc address, also one this message is not sent to (its
// copy goes another way); the oracle takes the field's addresses from the Bcc
// field, not only from the envelope, and accepts the plan.
func TestGroupBccListedOutsideEnvelope(t *testing.T) {
	in := Input{
		Header: header(base + "To: bob@x.test\nBcc: carol@y.test, dave@y.test\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
		Policy: Policy{Bcc: Group, KeepBcc: true},
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	want := "vis compat [bob@x.test] {bob@x.test//0}\n" +
		"hid compat [carol@y.test] {carol@y.test//0} bcc=carol@y.test,dave@y.test"
	if got := strings.Join(summary(p), "\n"); got != want {
		t.Fatalf("plan:\n%s\nwant:\n%s", got, want)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("CheckPrivacy() = %v", err)
	}
}

// TestOracleTokenBytes: the oracle finds a hidden recipient written into a
// text field whatever letters its address has: z and Z (the ends of the letter
// ranges) and U+0080 (the first rune beyond ASCII).
func TestOracleTokenBytes(t *testing.T) {
	for _, tt := range []struct{ rcpt, text string }{
		{"liz@z.test", "ask liz@z.test"},
		{"liz@z.test", "ask LIZ@Z.TEST"},
		// Cut at U+0080, the rest would read as bob, whom everyone sees.
		{"d\u0080bob@x.test", "ask d\u0080bob@x.test"},
	} {
		t.Run(tt.text, func(t *testing.T) {
			in := Input{
				Header: header(base + "To: bob@x.test\n"),
				RcptTo: []string{"bob@x.test", tt.rcpt},
				Certs:  certsFor("bob@x.test", tt.rcpt),
			}
			p, err := Make(in)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("good plan rejected: %v", err)
			}
			p.Packages[0].Edits.Fields = append(p.Packages[0].Edits.Fields, FieldEdit{Key: "Comments", N: -1, Value: tt.text})
			if err := CheckPrivacy(in, p); !errors.Is(err, ErrPrivacy) {
				t.Fatalf("CheckPrivacy() = %v, want %v", err, ErrPrivacy)
			}
		})
	}
}

// TestOracleTrailingComment: text whose last characters are a comment after
// an address ("bob@x.test (the visible one)": white space at the end once the
// comment is gone) is read to its end.
func TestOracleTrailingComment(t *testing.T) {
	in := Input{
		Header: header(base + "To: bob@x.test\nComments: ask bob@x.test (the visible one)\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := appliedKeys(t, in, p, 0); got != "From,Subject,To,Comments" {
		t.Fatalf("header = %s", got)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("CheckPrivacy() = %v", err)
	}
}

// TestOracleMimeVersion: MIME-Version is a content field to the oracle (the
// shared inner header may carry it, a hidden recipient in it is a right
// refusal), and every other field is not (the inner header may not carry a
// Subject); outside the content fields every address counts as revealed, one
// of no participant too.
func TestOracleMimeVersion(t *testing.T) {
	in := Input{
		Header: header(base + "To: bob@x.test\nMIME-Version: 1.0\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Inner.Fields) != 1 || p.Inner.Fields[0].Key != "Mime-Version" {
		t.Fatalf("inner header = %+v", p.Inner.Fields)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("good plan rejected: %v", err)
	}
	q := *p
	q.Inner.Fields = append([]FieldEdit{{Key: "Subject", N: 0}}, p.Inner.Fields...)
	if err := CheckPrivacy(in, &q); !errors.Is(err, ErrPrivacy) {
		t.Errorf("inner Subject: CheckPrivacy() = %v, want %v", err, ErrPrivacy)
	}
	q = *p
	q.Packages = append([]Package(nil), p.Packages...)
	q.Packages[0].Edits.Fields = append(append([]FieldEdit(nil), p.Packages[0].Edits.Fields...), FieldEdit{Key: "Comments", N: -1, Value: "ask zed@q.test"})
	if err := CheckPrivacy(in, &q); !errors.Is(err, ErrPrivacy) {
		t.Errorf("an address of no participant: CheckPrivacy() = %v, want %v", err, ErrPrivacy)
	}

	in.Header = header(base + "To: bob@x.test\nMIME-Version: 1.0 (carol@y.test)\n")
	_, err = Make(in)
	if !errors.Is(err, ErrHiddenInContent) {
		t.Fatalf("Make() = %v, want %v", err, ErrHiddenInContent)
	}
	if err := CheckRefusal(in, err); err != nil {
		t.Errorf("CheckRefusal() = %v", err)
	}
}

// TestStripReceivedAtStart: a Received field whose value starts with its "for"
// clause (a broken or hostile hop) loses the clause like any other.
func TestStripReceivedAtStart(t *testing.T) {
	for in, want := range map[string]string{
		"for <carol@y.test>; Sat, 1 Jan 2026":                 "; Sat, 1 Jan 2026",
		"for carol@y.test by b for <dave@y.test>; Sat":        " by b; Sat",
		"from a for <carol@y.test> for <dave@y.test>; Sat":    "from a; Sat",
		"FOR <carol@y.test>, dave@y.test (comment); Sat, 1 X": " (comment); Sat, 1 X",
	} {
		if got := stripReceived(in); got != want {
			t.Errorf("stripReceived(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStripReceivedWordBytes: "for" ending a word is no clause, for each end
// of the word-byte ranges; after any other byte it is one.
func TestStripReceivedWordBytes(t *testing.T) {
	for _, c := range "_09azAZ" {
		in := "from a id 1" + string(c) + "for <carol@y.test>; Sat"
		if got := stripReceived(in); got != in {
			t.Errorf("stripReceived(%q) = %q, want it unchanged", in, got)
		}
	}
	for _, c := range "/:`{@[" {
		in := "from a id 1" + string(c) + "for <carol@y.test>; Sat"
		want := "from a id 1" + string(c) + "; Sat"
		if got := stripReceived(in); got != want {
			t.Errorf("stripReceived(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestContentFieldLoose: a Content-* field is in every package, so a hidden
// recipient's address spelled loosely in it ("carol"@Y test: no dot, a
// blank, quotes) refuses the message.
func TestContentFieldLoose(t *testing.T) {
	in := Input{
		Header: header(base + "To: bob@x.test\nBcc: carol@y.test\nContent-Description: for \"carol\"@Y test\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
	}
	_, err := Make(in)
	if !errors.Is(err, ErrHiddenInContent) {
		t.Fatalf("Make() = %v, want %v", err, ErrHiddenInContent)
	}
	if err := CheckRefusal(in, err); err != nil {
		t.Errorf("CheckRefusal() = %v", err)
	}
}

// TestHeaderTextEdges: text that starts with a comment (white space first once
// it is gone), text that ends in an unfinished encoded word and text that ends
// in an address and a full stop are read to their ends: the first and the
// last name a hidden recipient and leave the visible package, the second is
// kept.
func TestHeaderTextEdges(t *testing.T) {
	in := Input{
		Header: header("From: Alice <alice@example.test>\nTo: bob@x.test\nBcc: carol@y.test\n" +
			"Subject: (re) ask carol@y.test\nKeywords: x =?utf-8?q?abc?\nComments: write to carol@y.test.\n"),
		RcptTo: []string{"bob@x.test", "carol@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test"),
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := appliedKeys(t, in, p, 0); got != "From,To,Keywords" {
		t.Fatalf("header = %s", got)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("CheckPrivacy() = %v", err)
	}
}

// TestContainsAddrBounds: an address followed by a full stop ends there unless
// a domain character follows the stop (then the domain goes on); one preceded
// by a local-part character, any rune beyond ASCII too, is another address.
func TestContainsAddrBounds(t *testing.T) {
	for s, want := range map[string]bool{
		"ask carol@y.test. Thanks": true,
		"ask carol@y.test.":        true,
		"ask carol@y.test.example": false,
		"ask carol@y.tests":        false,
		"ask xcarol@y.test":        false,
		"ask \u0080carol@y.test":   false,
		"ask \u00ffcarol@y.test":   false,
	} {
		if got := containsAddr(s, "carol@y.test", false); got != want {
			t.Errorf("containsAddr(%q, carol@y.test) = %v, want %v", s, got, want)
		}
	}
	for _, c := range "azAZ09!~._" {
		s := "ask " + string(c) + "carol@y.test"
		if containsAddr(s, "carol@y.test", false) {
			t.Errorf("containsAddr(%q, carol@y.test) = true, want false", s)
		}
	}
	for _, c := range "azAZ09-\u0080" {
		for _, s := range []string{"ask carol@y.test" + string(c), "ask carol@y.test." + string(c)} {
			if containsAddr(s, "carol@y.test", false) {
				t.Errorf("containsAddr(%q, carol@y.test) = true, want false", s)
			}
		}
	}
	for _, c := range " <(,:" {
		s := "ask" + string(c) + "carol@y.test"
		if !containsAddr(s, "carol@y.test", false) {
			t.Errorf("containsAddr(%q, carol@y.test) = false, want true", s)
		}
	}
	for _, c := range " >),;[]_`{}~" {
		s := "ask carol@y.test" + string(c)
		if !containsAddr(s, "carol@y.test", false) {
			t.Errorf("containsAddr(%q, carol@y.test) = false, want true", s)
		}
	}
}

// TestPassThroughAuthorsSources: MAIL FROM (unless empty or <>), From and Sender are the
// authors of a pass-through message.
func TestPassThroughAuthorsSources(t *testing.T) {
	h := header("From: Alice <alice@example.test>\nSender: sam@example.test\nTo: bob@x.test\n")
	for mf, want := range map[string]string{
		"<bounces@example.test>": "bounces@example.test,alice@example.test,sam@example.test",
		"<>":                     "alice@example.test,sam@example.test",
		"":                       "alice@example.test,sam@example.test",
	} {
		if got := strings.Join(PassThroughAuthors(mf, h, false), ","); got != want {
			t.Errorf("PassThroughAuthors(%q) = %s, want %s", mf, got, want)
		}
	}
}

// TestPassThroughRejectNames: the refusal under RejectUnknown names the first three dropped
// RecipientInfos and counts the rest, if any.
func TestPassThroughRejectNames(t *testing.T) {
	in := PassThroughInput{
		Header:   header("From: alice@example.test\nTo: bob@x.test\nSubject: s"),
		MailFrom: "alice@example.test",
		RcptTo:   []string{"bob@x.test"},
		RecipientInfos: []RecipientRef{
			{Key: "k-bob", Kind: "keytrans"}, {Key: "k-a", Kind: "keytrans"}, {Key: "k-b", Kind: "keytrans"},
			{Key: "k-c", Kind: "keytrans"}, {Key: "k-d", Kind: "keytrans"},
		},
		Owners:      map[string]KeyOwner{"k-bob": {Addr: "bob@x.test", Recipient: true}},
		Authors:     PassThroughAuthors("alice@example.test", header("From: alice@example.test"), false),
		PassThrough: PassThroughPolicy{Unknown: RejectUnknown},
	}
	_, err := PlanPassThrough(in)
	if !errors.Is(err, ErrRecipientInfoRejected) {
		t.Fatalf("PlanPassThrough() = %v, want %v", err, ErrRecipientInfoRejected)
	}
	for _, w := range []string{"#1 (owner unknown)", "#2 (owner unknown)", "#3 (owner unknown)", "and 1 more"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "#4") {
		t.Errorf("error %q names a fourth", err)
	}
	// Three: all named, nothing counted.
	in.RecipientInfos = in.RecipientInfos[:4]
	_, err = PlanPassThrough(in)
	if !errors.Is(err, ErrRecipientInfoRejected) || !strings.HasSuffix(err.Error(), "#3 (owner unknown)") {
		t.Errorf("three dropped: %v", err)
	}
}

// TestOracleReceivedSecondClause: the oracle reads every "for" clause of a Received field, not
// only the first; an address its token scan cannot read (a domain literal) shows it.
func TestOracleReceivedSecondClause(t *testing.T) {
	in := Input{
		Header: header(base + "To: bob@x.test\n"),
		RcptTo: []string{"bob@x.test", "carol@[192.0.2.1]"},
		Certs:  certsFor("bob@x.test", "carol@[192.0.2.1]"),
	}
	p, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, p); err != nil {
		t.Fatalf("good plan rejected: %v", err)
	}
	p.Packages[0].Edits.Fields = append(p.Packages[0].Edits.Fields,
		FieldEdit{Key: "Received", N: -1, Value: "from a by b for <bob@x.test> for <carol@[192.0.2.1]>; Sat"})
	if err := CheckPrivacy(in, p); !errors.Is(err, ErrPrivacy) {
		t.Fatalf("CheckPrivacy() = %v, want %v", err, ErrPrivacy)
	}
}

// TestPassThroughPackages: visible recipients with key-transport RecipientInfos share one
// package, one with a key-agreement RecipientInfo gets one of its own; the plan lists the
// pass-through profile when a package is encrypted and none when every recipient is refused;
// RejectUnknown with nothing dropped is no refusal.
func TestPassThroughPackages(t *testing.T) {
	in := PassThroughInput{
		Header:   header("From: alice@example.test\nTo: bob@x.test, dave@x.test, erin@x.test\nSubject: s"),
		MailFrom: "alice@example.test",
		RcptTo:   []string{"bob@x.test", "dave@x.test", "erin@x.test"},
		RecipientInfos: []RecipientRef{
			{Key: "k-bob", Kind: "keytrans"}, {Key: "k-dave", Kind: "keytrans"}, {Key: "k-erin", Kind: "keyagree"},
			{Key: "k-alice", Kind: "keytrans"},
		},
		Owners: map[string]KeyOwner{"k-bob": {Addr: "bob@x.test", Recipient: true}, "k-dave": {Addr: "dave@x.test", Recipient: true},
			"k-erin": {Addr: "erin@x.test", Recipient: true}, "k-alice": {Addr: "alice@example.test"}},
		Authors:     PassThroughAuthors("alice@example.test", header("From: alice@example.test"), false),
		PassThrough: PassThroughPolicy{Unknown: RejectUnknown},
	}
	pt, err := PlanPassThrough(in)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pk := range pt.Packages {
		got = append(got, strings.Join(pk.Recipients, "+"))
	}
	if strings.Join(got, " ") != "erin@x.test bob@x.test+dave@x.test" {
		t.Errorf("packages %v, want bob and dave together, erin alone", got)
	}
	if strings.Join(pt.Plan.Profiles, ",") != PassThroughProfile {
		t.Errorf("profiles %v", pt.Plan.Profiles)
	}

	in.Header = header("From: alice@example.test\nTo: carol@y.test\nSubject: s")
	in.RcptTo = []string{"carol@y.test"}
	in.RecipientInfos = []RecipientRef{{Key: "k-alice", Kind: "keytrans"}}
	in.PassThrough = PassThroughPolicy{}
	pt, err = PlanPassThrough(in)
	if err != nil {
		t.Fatal(err)
	}
	if len(pt.Packages) != 0 || len(pt.Refused) != 1 || pt.Plan.Profiles != nil {
		t.Errorf("every recipient refused: %d packages, refused %+v, profiles %v", len(pt.Packages), pt.Refused, pt.Plan.Profiles)
	}
}
