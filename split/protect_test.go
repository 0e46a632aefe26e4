package split

import (
	"bufio"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

func protectInput(t *testing.T, hdr string, rcpts ...string) Input {
	t.Helper()
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(hdr + "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	in := Input{Header: h, MailFrom: "alice@a.test", RcptTo: rcpts, Certs: map[string][]Cert{},
		Policy: Policy{HeaderProtection: HeaderProtection{On: true}, KeepBcc: true}}
	for _, r := range rcpts {
		in.Certs[r] = []Cert{{ID: "id-" + r, Owner: r}}
	}
	return in
}

// TestProtectedHeaderNamesNoHiddenRecipient: the protected header every package shares keeps
// From, To, Cc, Subject, Date and Message-ID, and names no Bcc recipient in any field (a Bcc
// field, a Reply-To, a display name in To), while each hidden package's own outer header may.
func TestProtectedHeaderNamesNoHiddenRecipient(t *testing.T) {
	in := protectInput(t, "From: Alice <alice@a.test>\r\n"+
		"To: \"Dave's friend (dave@d.test)\" <bob@b.test>\r\n"+
		"Cc: carol@c.test\r\nBcc: dave@d.test, erin@e.test\r\nReply-To: dave@d.test\r\n"+
		"Subject: the plan\r\nDate: Sat, 28 Nov 2026 15:00:00 +0000\r\nMessage-ID: <m1@a.test>\r\n"+
		"Received: from x by y for <erin@e.test>; Sat, 28 Nov 2026 15:00:00 +0000\r\n"+
		"Content-Type: text/plain\r\n",
		"bob@b.test", "carol@c.test", "dave@d.test", "erin@e.test")
	for _, mode := range []BccMode{Individual, Group} {
		in.Policy.Bcc = mode
		p, err := Make(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPrivacy(in, p); err != nil {
			t.Fatal(err)
		}
		if p.Protection == nil {
			t.Fatal("header protection is on for every recipient, but the plan has none")
		}
		got := map[string]string{}
		for _, f := range oracleApply(in.Header, p.Protection.Header) {
			got[f[0]] = f[1]
			for _, secret := range []string{"dave", "erin"} {
				if strings.Contains(strings.ToLower(f[1]), secret) {
					t.Fatalf("mode %d: protected %s names %s: %q", mode, f[0], secret, f[1])
				}
			}
		}
		for _, k := range []string{"From", "To", "Cc", "Subject", "Date", "Message-Id"} {
			if got[k] == "" {
				t.Fatalf("mode %d: protected header lacks %s: %v", mode, k, got)
			}
		}
		for _, k := range []string{"Bcc", "Reply-To", "Received", "Content-Type"} {
			if _, ok := got[k]; ok {
				t.Fatalf("mode %d: protected header carries %s", mode, k)
			}
		}
		if got["To"] != "<bob@b.test>" {
			t.Fatalf("mode %d: protected To is %q, want the bare address", mode, got["To"])
		}
	}
}

// TestProtectionPerDomain: one recipient whose domain has header protection off leaves the
// whole message without it (the body is signed once for every package); a refused recipient
// does not count.
func TestProtectionPerDomain(t *testing.T) {
	in := protectInput(t, "From: alice@a.test\r\nTo: bob@b.test, carol@c.test\r\nSubject: s\r\n", "bob@b.test", "carol@c.test")
	in.Policy.HeaderProtection.Domains = map[string]bool{"c.test": false}
	if p, err := Make(in); err != nil || p.Protection != nil {
		t.Fatalf("c.test has it off: protection %v, err %v", p.Protection, err)
	}
	delete(in.Certs, "carol@c.test") // carol is refused, the rest of the message is protected
	if p, err := Make(in); err != nil || p.Protection == nil {
		t.Fatalf("only bob gets a package: protection %v, err %v", p.Protection, err)
	}
	in = protectInput(t, "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: s\r\n", "bob@b.test")
	in.Policy.HeaderProtection = HeaderProtection{Domains: map[string]bool{"b.test": true}}
	if p, err := Make(in); err != nil || p.Protection == nil {
		t.Fatalf("b.test has it on: protection %v, err %v", p.Protection, err)
	}
	in.Policy.HeaderProtection = HeaderProtection{}
	if p, err := Make(in); err != nil || p.Protection != nil {
		t.Fatalf("off by default: protection %v, err %v", p.Protection, err)
	}
}

// TestOracleCatchesLeakyProtectedHeader: the oracle refuses a protected header with a Bcc
// field or a hidden recipient in another field.
func TestOracleCatchesLeakyProtectedHeader(t *testing.T) {
	in := protectInput(t, "From: alice@a.test\r\nTo: bob@b.test\r\nBcc: dave@d.test\r\nReply-To: dave@d.test\r\nSubject: s\r\n",
		"bob@b.test", "dave@d.test")
	for name, add := range map[string]FieldEdit{
		"bcc":      {Key: "Bcc", N: -1, Value: "dave@d.test"},
		"reply-to": {Key: "Reply-To", N: 0},
		"keywords": {Key: "Keywords", N: -1, Value: "for dave@d.test"},
	} {
		p, err := Make(in)
		if err != nil {
			t.Fatal(err)
		}
		p.Protection.Header.Fields = append(p.Protection.Header.Fields, add)
		if err := CheckPrivacy(in, p); !errors.Is(err, ErrPrivacy) {
			t.Fatalf("%s: oracle accepted a protected header naming the Bcc recipient: %v", name, err)
		}
	}
}

// TestProtectedPlanProperty runs the random plans of TestPlanProperty with header protection
// on: the oracle checks every protected header.
func TestProtectedPlanProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(*propSeed, 21))
	protected := 0
	for i := range max(*propCases/4, 200) {
		in := genInput(r)
		in.Policy.HeaderProtection = HeaderProtection{On: true}
		p, err := Make(in)
		if err != nil {
			continue
		}
		if err := CheckPrivacy(in, p); err != nil {
			t.Fatalf("case %d: %v\n%s", i, err, describe(in))
		}
		if p.Protection != nil {
			protected++
		}
	}
	if protected == 0 {
		t.Fatal("no random plan had header protection")
	}
}
