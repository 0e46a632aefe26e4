package split

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"
)

func header(s string) textproto.Header {
	s = strings.ReplaceAll(s, "\n", "\r\n")
	h, err := textproto.ReadHeader(bufio.NewReader(strings.NewReader(s + "\r\n")))
	if err != nil {
		panic(fmt.Sprintf("failed to read test header %q: %v", s, err))
	}
	return h
}

var day0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// cert makes a certificate whose ID names owner, profile and age.
func cert(owner, profile string, day int) Cert {
	return Cert{ID: fmt.Sprintf("%s/%s/%d", owner, profile, day), Owner: owner, Profile: profile, NotBefore: day0.AddDate(0, 0, day)}
}

// certsFor gives every listed address one compat certificate.
func certsFor(addrs ...string) map[string][]Cert {
	m := map[string][]Cert{}
	for _, a := range addrs {
		m[a] = []Cert{cert(a, "", 0)}
	}
	return m
}

// summary renders a plan compactly: one line per package and refusal.
func summary(p *Plan) []string {
	var out []string
	for _, pk := range p.Packages {
		var ids []string
		for _, c := range pk.Certs {
			ids = append(ids, c.ID)
		}
		kind := "vis"
		if pk.Hidden {
			kind = "hid"
		}
		line := fmt.Sprintf("%s %s [%s] {%s}", kind, pk.Profile, strings.Join(pk.Recipients, ","), strings.Join(ids, ","))
		if len(pk.Edits.Bcc) > 0 {
			line += " bcc=" + strings.Join(pk.Edits.Bcc, ",")
		}
		out = append(out, line)
	}
	for _, r := range p.Refused {
		out = append(out, fmt.Sprintf("refused %s %d %s dsn=%v: %s", r.Recipient, r.Code, r.Enhanced, r.DSN, r.Reason))
	}
	return out
}

const base = "From: Alice <alice@example.test>\nSubject: hi\n"

func TestMake(t *testing.T) {
	alice := cert("alice@example.test", "", 0)
	tests := []struct {
		name    string
		hdr     string
		from    string
		rcpt    []string
		certs   map[string][]Cert
		self    []Cert
		pol     Policy
		want    []string
		wantErr error
	}{
		{
			name:  "ok bcc header present",
			hdr:   base + "To: bob@x.test\nBcc: carol@y.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test", "carol@y.test"),
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0}",
			},
		},
		{
			name:  "ok bcc header already stripped by client",
			hdr:   base + "To: bob@x.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test", "carol@y.test"),
			pol:   Policy{KeepBcc: true},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0}",
			},
		},
		{
			name:  "ok to address also in bcc is visible",
			hdr:   base + "To: bob@x.test, dave@x.test\nBcc: Bob <BOB@X.test>\n",
			rcpt:  []string{"bob@x.test", "dave@x.test"},
			certs: certsFor("bob@x.test", "dave@x.test"),
			want:  []string{"vis compat [bob@x.test,dave@x.test] {bob@x.test//0,dave@x.test//0}"},
		},
		{
			name:  "ok sender bccs themselves with self copy",
			hdr:   base + "To: bob@x.test\nBcc: alice@example.test\n",
			from:  "alice@example.test",
			rcpt:  []string{"bob@x.test", "alice@example.test"},
			certs: map[string][]Cert{"bob@x.test": {cert("bob@x.test", "", 0)}, "alice@example.test": {alice}},
			self:  []Cert{alice},
			pol:   Policy{SelfCopy: true, KeepBcc: true},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0,alice@example.test//0}",
				"hid compat [alice@example.test] {alice@example.test//0} bcc=alice@example.test",
			},
		},
		{
			name:  "ok undisclosed recipients group",
			hdr:   base + "To: undisclosed-recipients:;\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test", "carol@y.test"),
			want: []string{
				"hid compat [bob@x.test] {bob@x.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0}",
			},
		},
		{
			name:  "ok named group makes its members visible",
			hdr:   base + "To: Friends: bob@x.test, \"Carol C\" <carol@y.test>;, dave@z.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test", "dave@z.test"},
			certs: certsFor("bob@x.test", "carol@y.test", "dave@z.test"),
			want:  []string{"vis compat [bob@x.test,carol@y.test,dave@z.test] {bob@x.test//0,carol@y.test//0,dave@z.test//0}"},
		},
		{
			name:  "ok no to or cc, bcc only, group mode",
			hdr:   base + "Bcc: bob@x.test, carol@y.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test", "carol@y.test"),
			pol:   Policy{Bcc: Group, KeepBcc: true},
			want:  []string{"hid compat [bob@x.test,carol@y.test] {bob@x.test//0,carol@y.test//0} bcc=bob@x.test,carol@y.test"},
		},
		{
			name:  "ok one address twice with different case",
			hdr:   base + "To: Bob <Bob@X.Test>\nCc: bob@x.test\n",
			rcpt:  []string{"bob@x.test", "BOB@x.TEST", "<Bob@X.test>"},
			certs: map[string][]Cert{"Bob@X.TEST": {cert("bob@x.test", "", 0)}},
			want:  []string{"vis compat [bob@x.test] {bob@x.test//0}"},
		},
		{
			name:  "ok case-sensitive local parts are two recipients",
			hdr:   base + "To: bob@x.test\n",
			rcpt:  []string{"bob@x.test", "Bob@x.test"},
			certs: map[string][]Cert{"bob@x.test": {cert("bob@x.test", "", 0)}, "Bob@x.test": {cert("Bob@x.test", "", 0)}},
			pol:   Policy{CaseSensitiveLocalPart: true},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				"hid compat [Bob@x.test] {Bob@x.test//0}",
			},
		},
		{
			name: "ok recipient in two profiles by two certificates goes to compat with both",
			hdr:  base + "To: bob@x.test, carol@y.test\n",
			rcpt: []string{"bob@x.test", "carol@y.test"},
			certs: map[string][]Cert{
				"bob@x.test":   {cert("bob@x.test", "modern", 1), cert("bob@x.test", "compat", 0)},
				"carol@y.test": {cert("carol@y.test", "modern", 0)},
			},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test/modern/1,bob@x.test/compat/0}",
				"vis modern [carol@y.test] {carol@y.test/modern/0}",
			},
		},
		{
			name: "ok newest certificate only",
			hdr:  base + "To: bob@x.test, carol@y.test\n",
			rcpt: []string{"bob@x.test", "carol@y.test"},
			certs: map[string][]Cert{
				"bob@x.test":   {cert("bob@x.test", "modern", 1), cert("bob@x.test", "compat", 0)},
				"carol@y.test": {cert("carol@y.test", "modern", 0)},
			},
			pol:  Policy{CertChoice: Newest},
			want: []string{"vis modern [bob@x.test,carol@y.test] {bob@x.test/modern/1,carol@y.test/modern/0}"},
		},
		{
			name:  "ok domain profile override and two-profile bcc in group mode",
			hdr:   base + "To: bob@x.test\nCc: dave@m.test\nBcc: carol@y.test, erin@m.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test", "dave@m.test", "erin@m.test"},
			certs: certsFor("bob@x.test", "carol@y.test", "dave@m.test", "erin@m.test"),
			pol:   Policy{Bcc: Group, DomainProfiles: map[string]string{"m.test": "modern"}},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				"vis modern [dave@m.test] {dave@m.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0}",
				"hid modern [erin@m.test] {erin@m.test//0}",
			},
		},
		{
			// No client is known to read both: compat, which every client reads.
			name: "ok certificates asking for different profiles get compat",
			hdr:  base + "To: bob@x.test\nCc: dave@m.test\n",
			rcpt: []string{"bob@x.test", "dave@m.test"},
			certs: map[string][]Cert{
				"bob@x.test":  {cert("bob@x.test", "a-modern", 0), cert("bob@x.test", "b-modern", 1)},
				"dave@m.test": {cert("dave@m.test", "b-modern", 0), cert("dave@m.test", "b-modern", 1)},
			},
			want: []string{
				"vis b-modern [dave@m.test] {dave@m.test/b-modern/0,dave@m.test/b-modern/1}",
				"vis compat [bob@x.test] {bob@x.test/a-modern/0,bob@x.test/b-modern/1}",
			},
		},
		{
			name:  "ok missing certificate rejected naming only that recipient",
			hdr:   base + "To: bob@x.test\nBcc: carol@y.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test"),
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				`refused carol@y.test 550 5.7.1 dsn=false: no valid encryption certificate for "carol@y.test"`,
			},
		},
		{
			name:  "ok missing certificate dropped with dsn",
			hdr:   base + "To: bob@x.test, carol@y.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test"},
			certs: certsFor("bob@x.test"),
			pol:   Policy{MissingCert: Drop},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				`refused carol@y.test 550 5.7.1 dsn=true: no valid encryption certificate for "carol@y.test"`,
			},
		},
		{
			name:  "ok missing certificates sent signed-only one package each",
			hdr:   base + "To: bob@x.test, dave@x.test\nBcc: carol@y.test, erin@y.test\n",
			rcpt:  []string{"bob@x.test", "dave@x.test", "carol@y.test", "erin@y.test"},
			certs: certsFor("bob@x.test"),
			self:  []Cert{alice},
			pol:   Policy{MissingCert: Plaintext, SelfCopy: true, KeepBcc: true, Bcc: Group},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0,alice@example.test//0}",
				"vis  [dave@x.test] {}",
				"hid  [carol@y.test] {} bcc=carol@y.test",
				"hid  [erin@y.test] {} bcc=erin@y.test",
			},
		},
		{
			name:  "ok display names quoted local parts and comments",
			hdr:   base + "To: \"Bob B.\" <\"bob.b\"@X.TEST> (work)\nCc: =?utf-8?q?J=C3=B6rg?= <joerg@y.test>\n",
			rcpt:  []string{"bob.b@x.test", "joerg@y.test"},
			certs: certsFor("bob.b@x.test", "joerg@y.test"),
			want:  []string{"vis compat [bob.b@x.test,joerg@y.test] {bob.b@x.test//0,joerg@y.test//0}"},
		},
		{
			name:  "ok to address not in envelope is visible but not delivered",
			hdr:   base + "To: bob@x.test, elsewhere@far.test\n",
			rcpt:  []string{"bob@x.test"},
			certs: certsFor("bob@x.test"),
			want:  []string{"vis compat [bob@x.test] {bob@x.test//0}"},
		},
		{
			name:  "ok individual keeps only own address in bcc",
			hdr:   base + "To: bob@x.test\nBcc: carol@y.test, Erin <erin@y.test>\n",
			rcpt:  []string{"bob@x.test", "carol@y.test", "erin@y.test"},
			certs: certsFor("bob@x.test", "carol@y.test", "erin@y.test"),
			pol:   Policy{KeepBcc: true},
			want: []string{
				"vis compat [bob@x.test] {bob@x.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0} bcc=carol@y.test",
				"hid compat [erin@y.test] {erin@y.test//0} bcc=erin@y.test",
			},
		},
		{
			// RFC 5322 section 3.6.6: a block with only Resent-Bcc makes
			// every recipient of this copy hidden; the original Bcc is the
			// old message's and goes to no one.
			name:  "ok resent block decides, the original bcc is not carried",
			hdr:   "Resent-From: alice@example.test\nResent-Bcc: frank@z.test\n" + base + "To: bob@x.test\nBcc: carol@y.test\n",
			rcpt:  []string{"bob@x.test", "carol@y.test", "frank@z.test"},
			certs: certsFor("bob@x.test", "carol@y.test", "frank@z.test"),
			pol:   Policy{KeepBcc: true},
			want: []string{
				"hid compat [bob@x.test] {bob@x.test//0}",
				"hid compat [carol@y.test] {carol@y.test//0}",
				"hid compat [frank@z.test] {frank@z.test//0} bcc=frank@z.test",
			},
		},
		{
			name:    "fail unparsable to",
			hdr:     base + "To: bob@@x.test <\n",
			rcpt:    []string{"bob@x.test"},
			wantErr: ErrInvalidAddress,
		},
		{
			name:    "fail unparsable bcc",
			hdr:     base + "To: bob@x.test\nBcc: \"carol\n",
			rcpt:    []string{"bob@x.test"},
			wantErr: ErrInvalidAddress,
		},
		{
			name:    "fail unparsable envelope recipient",
			hdr:     base,
			rcpt:    []string{"postmaster"},
			wantErr: ErrInvalidAddress,
		},
		{
			name:    "fail empty envelope",
			hdr:     base,
			wantErr: ErrNoRecipients,
		},
		{
			name:    "fail certificate of another owner",
			hdr:     base + "To: bob@x.test\n",
			rcpt:    []string{"bob@x.test"},
			certs:   map[string][]Cert{"bob@x.test": {cert("carol@y.test", "", 0)}},
			wantErr: ErrInvalidCert,
		},
		{
			name:    "fail certificate without id",
			hdr:     base + "To: bob@x.test\n",
			rcpt:    []string{"bob@x.test"},
			certs:   map[string][]Cert{"bob@x.test": {{Owner: "bob@x.test"}}},
			wantErr: ErrInvalidCert,
		},
		{
			name:    "fail self copy certificate not the sender's",
			hdr:     base + "To: bob@x.test\n",
			rcpt:    []string{"bob@x.test"},
			certs:   certsFor("bob@x.test"),
			self:    []Cert{cert("mallory@evil.test", "", 0)},
			pol:     Policy{SelfCopy: true},
			wantErr: ErrInvalidCert,
		},
		{
			name:    "fail invalid policy",
			hdr:     base + "To: bob@x.test\n",
			rcpt:    []string{"bob@x.test"},
			pol:     Policy{Bcc: 7},
			wantErr: ErrInvalidPolicy,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := Input{Header: header(tt.hdr), MailFrom: tt.from, RcptTo: tt.rcpt, Certs: tt.certs, SenderCerts: tt.self, Policy: tt.pol}
			p, err := Make(in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Make() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Make() error = %v", err)
			}
			got := summary(p)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Errorf("CheckPrivacy() = %v", err)
			}
		})
	}
}

// TestMakeHeaders checks what each package's recipients would read.
func TestMakeHeaders(t *testing.T) {
	hdr := "Received: from a.test by relay.test with ESMTP id 1\n\tfor <carol@y.test>; Sat, 28 Nov 2026 10:00:00 +0000\n" +
		"X-Original-To: carol@y.test\nDelivered-To: carol@y.test\n" + base +
		"To: bob@x.test\nBcc: carol@y.test, dave@y.test\n"
	in := Input{
		Header: header(hdr),
		RcptTo: []string{"bob@x.test", "carol@y.test", "dave@y.test"},
		Certs:  certsFor("bob@x.test", "carol@y.test", "dave@y.test"),
	}
	tests := []struct {
		name   string
		pol    Policy
		pkg    int
		want   []string // substrings the rendered header must contain
		absent []string
	}{
		{name: "ok visible package names no hidden recipient", pkg: 0,
			want:   []string{"To: bob@x.test", "Received: from a.test by relay.test with ESMTP id 1; Sat"},
			absent: []string{"carol", "dave", "Bcc"}},
		{name: "ok individual copy without bcc", pkg: 1, absent: []string{"carol", "dave", "Bcc"}},
		{name: "ok individual copy naming only itself", pol: Policy{KeepBcc: true}, pkg: 2,
			want: []string{"Bcc: dave@y.test"}, absent: []string{"carol"}},
		{name: "ok group copy lists all bcc", pol: Policy{Bcc: Group, KeepBcc: true}, pkg: 1,
			want: []string{"Bcc: carol@y.test, dave@y.test"}, absent: []string{"X-Original-To", "Delivered-To", "for <"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := in
			in.Policy = tt.pol
			p, err := Make(in)
			if err != nil {
				t.Fatalf("Make() error = %v", err)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("CheckPrivacy() = %v", err)
			}
			h := in.Header.Copy()
			p.Packages[tt.pkg].Edits.Apply(&h)
			var b strings.Builder
			if err := textproto.WriteHeader(&b, h); err != nil {
				t.Fatal(err)
			}
			s := b.String()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("header lacks %q:\n%s", w, s)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(s, a) {
					t.Errorf("header has %q:\n%s", a, s)
				}
			}
			if !strings.HasPrefix(s, "Received:") {
				t.Errorf("field order changed:\n%s", s)
			}
		})
	}
	// The submitted header itself is untouched.
	if !strings.Contains(strings.Join(in.Header.Values("Bcc"), ""), "carol") {
		t.Fatal("Make or Apply modified Input.Header")
	}
}

func TestMakeThousandBcc(t *testing.T) {
	rcpt := []string{"bob@x.test"}
	var bcc []string
	for i := range 1000 {
		a := fmt.Sprintf("user%d@bcc.test", i)
		rcpt = append(rcpt, a)
		bcc = append(bcc, a)
	}
	certs := certsFor(rcpt...)
	tests := []struct {
		name     string
		mode     BccMode
		packages int
	}{
		{name: "ok individual", mode: Individual, packages: 1001},
		{name: "ok group", mode: Group, packages: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := Input{
				Header: header(base + "To: bob@x.test\nBcc: " + strings.Join(bcc, ",\n ") + "\n"),
				RcptTo: rcpt, Certs: certs, Policy: Policy{Bcc: tt.mode, KeepBcc: true},
			}
			p, err := Make(in)
			if err != nil {
				t.Fatalf("Make() error = %v", err)
			}
			if len(p.Packages) != tt.packages || len(p.Profiles) != 1 {
				t.Fatalf("got %d packages, %d profiles; want %d, 1", len(p.Packages), len(p.Profiles), tt.packages)
			}
			if err := CheckPrivacy(in, p); err != nil {
				t.Fatalf("CheckPrivacy() = %v", err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in string
		cs       bool
		want     string
		fail     bool
	}{
		{name: "ok domain case folded", in: "Bob@Example.TEST", want: "bob@example.test"},
		{name: "ok local case kept when sensitive", in: "Bob@Example.TEST", cs: true, want: "Bob@example.test"},
		{name: "ok display name and brackets", in: "Bob B <bob@x.test>", want: "bob@x.test"},
		{name: "ok quoted local part", in: `"Bob Smith"@x.test`, want: "bob smith@x.test"},
		{name: "ok quoted equals unquoted", in: `"bob"@x.test`, want: "bob@x.test"},
		{name: "ok comment", in: "bob@x.test (Bob)", want: "bob@x.test"},
		{name: "fail no domain", in: "postmaster", fail: true},
		{name: "fail empty", in: "", fail: true},
		{name: "fail two addresses", in: "a@x.test, b@x.test", fail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in, tt.cs)
			if (err != nil) != tt.fail || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q, fail=%v", tt.in, got, err, tt.want, tt.fail)
			}
		})
	}
}

// TestCheckPrivacyCatches breaks a good plan in each way the oracle must
// notice, so the property and fuzz tests cannot pass vacuously.
func TestCheckPrivacyCatches(t *testing.T) {
	alice := cert("alice@example.test", "", 0)
	in := Input{
		Header:      header(base + "To: bob@x.test\nBcc: carol@y.test\n"),
		MailFrom:    "alice@example.test",
		RcptTo:      []string{"bob@x.test", "carol@y.test", "dave@z.test", "erin@w.test"},
		Certs:       map[string][]Cert{"bob@x.test": {cert("bob@x.test", "", 0)}, "carol@y.test": {cert("carol@y.test", "", 0)}, "dave@z.test": {cert("dave@z.test", "", 0)}},
		SenderCerts: []Cert{alice},
		Policy:      Policy{SelfCopy: true, KeepBcc: true},
	}
	good, err := Make(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivacy(in, good); err != nil {
		t.Fatalf("good plan rejected: %v", err)
	}
	// good: 0 vis bob, 1 hid carol, 2 hid dave, refused erin.
	clone := func() *Plan {
		p := *good
		p.Packages = nil
		for _, pk := range good.Packages {
			pk.Recipients = append([]string(nil), pk.Recipients...)
			pk.Certs = append([]Cert(nil), pk.Certs...)
			pk.Edits.Fields = append([]FieldEdit(nil), pk.Edits.Fields...)
			p.Packages = append(p.Packages, pk)
		}
		p.Refused = append([]Refusal(nil), good.Refused...)
		p.Profiles = append([]string(nil), good.Profiles...)
		return &p
	}
	tests := []struct {
		name   string
		break_ func(p *Plan)
		want   error
	}{
		{"fail hidden certificate in visible package", func(p *Plan) { p.Packages[0].Certs = append(p.Packages[0].Certs, in.Certs["carol@y.test"][0]) }, ErrPrivacy},
		{"fail bcc field kept on visible package", func(p *Plan) {
			p.Packages[0].Edits.Fields = append(p.Packages[0].Edits.Fields, FieldEdit{Key: "Bcc", N: 0})
		}, ErrPrivacy},
		{"fail bcc naming another hidden recipient", func(p *Plan) {
			p.Packages[2].Edits.Fields = append(p.Packages[2].Edits.Fields, FieldEdit{Key: "Bcc", N: -1, Value: "carol@y.test"})
		}, ErrPrivacy},
		{"fail hidden recipients merged in individual mode", func(p *Plan) {
			p.Packages[1].Recipients = append(p.Packages[1].Recipients, "dave@z.test")
			p.Packages[1].Certs = append(p.Packages[1].Certs, in.Certs["dave@z.test"][0])
			p.Packages = p.Packages[:2]
		}, ErrPrivacy},
		{"fail hidden recipient in visible package", func(p *Plan) {
			p.Packages[0].Recipients = append(p.Packages[0].Recipients, "carol@y.test")
			p.Packages = append(p.Packages[:1], p.Packages[2:]...)
		}, ErrPrivacy},
		{"fail recipient dropped", func(p *Plan) { p.Packages = p.Packages[:2] }, ErrIncomplete},
		{"fail recipient twice", func(p *Plan) { p.Packages = append(p.Packages, p.Packages[2]) }, ErrIncomplete},
		{"fail recipient cannot decrypt", func(p *Plan) { p.Packages[1].Certs = p.Packages[1].Certs[1:] }, ErrIncomplete},
		{"fail self copy missing", func(p *Plan) { p.Packages[0].Certs = p.Packages[0].Certs[:1] }, ErrIncomplete},
		{"fail refusal missing", func(p *Plan) { p.Refused = nil }, ErrIncomplete},
		{"fail refusal names another recipient", func(p *Plan) { p.Refused[0].Reason = "refused, unlike carol@y.test" }, ErrPrivacy},
		{"fail refusal wrong status", func(p *Plan) { p.Refused[0].Code = 451 }, ErrIncomplete},
		{"fail profile encrypted twice", func(p *Plan) { p.Profiles = append(p.Profiles, p.Profiles[0]) }, ErrNotMinimal},
		{"fail inner header writes a bcc field", func(p *Plan) { p.Inner.Bcc = []string{"carol@y.test"} }, ErrPrivacy},
		{"fail inner header keeps the bcc field", func(p *Plan) { p.Inner.Fields = append(p.Inner.Fields, FieldEdit{Key: "Bcc", N: 0}) }, ErrPrivacy},
		{"fail unknown certificate", func(p *Plan) { p.Packages[0].Certs = append(p.Packages[0].Certs, cert("zed@q.test", "", 0)) }, ErrPrivacy},
		{"fail received for allowed with two recipients", func(p *Plan) { p.Packages[0].ReceivedFor = "carol@y.test" }, ErrPrivacy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := clone()
			tt.break_(p)
			if err := CheckPrivacy(in, p); !errors.Is(err, tt.want) {
				t.Fatalf("CheckPrivacy() = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestApplyReceived(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"ok angle path", "from a by b id 1 for <carol@y.test>; Sat, 1 Jan 2026", "from a by b id 1; Sat, 1 Jan 2026"},
		{"ok bare path", "from a by b id 1 for carol@y.test; Sat, 1 Jan 2026", "from a by b id 1; Sat, 1 Jan 2026"},
		{"ok folded", "from a by b id 1\r\n\tfor <carol@y.test>; Sat", "from a by b id 1; Sat"},
		{"ok the word for in a comment stays", "from a (used for testing) by b; Sat", "from a (used for testing) by b; Sat"},
		{"ok path list", "from a by b for <bob@x.test>, carol@y.test; Sat", "from a by b; Sat"},
		{"ok unclosed path", "from a by b for <carol@y.test; Sat", "from a by b; Sat"},
		{"ok clause after a kept for for", "from a by b for for <carol@y.test>; Sat", "from a by b for; Sat"},
		{"ok clause after a kept path list", "from a by b for x,for <carol@y.test>; Sat", "from a by b for x,; Sat"},
		{"ok removal that joins a new clause", "from a fo for <x@y.test>r <carol@y.test>; Sat", "from a; Sat"},
		{"ok no address, no change", "from a by b for <postmaster>; Sat", "from a by b for <postmaster>; Sat"},
		{"ok word ending in for stays", "from a by b therefor <carol@y.test>; Sat", "from a by b therefor <carol@y.test>; Sat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := header("Subject: 1\nReceived: " + tt.in + "\nDate: 2\n")
			fields, err := readFields(h, nil, false)
			if err != nil {
				t.Fatal(err)
			}
			edits(fields, func(string) bool { return false }, "Bcc", nil, -1).Apply(&h)
			if got := h.Get("Received"); got != tt.want {
				t.Fatalf("Received = %q, want %q", got, tt.want)
			}
			var keys []string
			for f := h.Fields(); f.Next(); {
				keys = append(keys, f.Key())
			}
			if strings.Join(keys, ",") != "Subject,Received,Date" {
				t.Fatalf("order = %v", keys)
			}
		})
	}
}
