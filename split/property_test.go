package split

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

var (
	propSeed  = flag.Uint64("split.seed", 20261128, "seed of TestPlanProperty")
	propCases = flag.Int("split.cases", 10000, "cases of TestPlanProperty")
)

// person is one identity of the generated world.
type person struct{ local, domain string }

var people = []person{
	{"alice", "example.test"}, {"bob", "x.test"}, {"carol", "y.test"}, {"dave", "m.test"},
	{"erin", "m.test"}, {"frank", "x.test"}, {"grace", "y.test"}, {"heidi", "z.test"},
	{"ivan", "m.test"}, {"judy", "example.test"},
}

// spelling writes p's address with random case (domain only when local parts
// are case-sensitive) and random RFC 5322 decoration.
func spelling(r *rand.Rand, p person, cs bool, decorate bool) string {
	flip := func(s string) string {
		b := []byte(s)
		for i := range b {
			if r.IntN(3) == 0 && b[i] >= 'a' && b[i] <= 'z' {
				b[i] -= 'a' - 'A'
			}
		}
		return string(b)
	}
	local := p.local
	if !cs {
		local = flip(local)
	}
	spec := local + "@" + flip(p.domain)
	if !decorate {
		return spec
	}
	switch r.IntN(6) {
	case 0:
		return fmt.Sprintf("%q <%s>", strings.ToUpper(p.local[:1])+p.local[1:]+" Q.", spec)
	case 1:
		return fmt.Sprintf("<%s>", spec)
	case 2:
		return fmt.Sprintf("%q@%s (a comment)", local, flip(p.domain))
	case 3:
		return fmt.Sprintf("=?utf-8?q?%s_=C3=A9?= <%s>", p.local, spec)
	default:
		return spec
	}
}

// mention writes p's address inside free text, in one of the forms a reader
// still recognises.
func mention(r *rand.Rand, p person, cs bool) string {
	spec := p.local + "@" + p.domain
	switch r.IntN(9) {
	case 0:
		return "<" + spec + ">"
	case 1:
		return fmt.Sprintf("%q@%s", p.local, strings.ToUpper(p.domain))
	case 2:
		return fmt.Sprintf("%s(c)@%s", p.local, p.domain)
	case 3:
		return fmt.Sprintf("%s (c) @ %s", p.local, p.domain)
	case 4:
		return fmt.Sprintf("=?utf-8?q?%s=40%s?=", p.local, p.domain)
	case 5:
		return fmt.Sprintf("=?utf-8?b?%s?=", base64.StdEncoding.EncodeToString([]byte("to "+spec)))
	case 6:
		return fmt.Sprintf("words (%s) more", spec)
	case 7:
		return "plain words"
	default:
		return spelling(r, p, cs, true)
	}
}

// genInput makes one random Input; a few are refused, for a reason
// CheckRefusal must find true.
func genInput(r *rand.Rand) Input {
	pol := Policy{
		Bcc:                    BccMode(r.IntN(2)),
		MissingCert:            MissingCert(r.IntN(3)),
		CertChoice:             CertChoice(r.IntN(2)),
		SelfCopy:               r.IntN(2) == 0,
		KeepBcc:                r.IntN(2) == 0,
		CaseSensitiveLocalPart: r.IntN(4) == 0,
	}
	if r.IntN(2) == 0 {
		pol.DomainProfiles = map[string]string{"m.test": "modern"}
	}
	if r.IntN(4) == 0 {
		pol.Profile = "modern"
	}
	cs := pol.CaseSensitiveLocalPart
	n := 1 + r.IntN(len(people)-1)
	world := people[:n+1]
	var to, cc, bcc, rcpt []string
	certs := map[string][]Cert{}
	var senderCerts []Cert
	profiles := []string{"", "compat", "modern"}
	for i, p := range world {
		if r.IntN(10) < 3 {
			to = append(to, spelling(r, p, cs, true))
		}
		if r.IntN(10) < 2 {
			cc = append(cc, spelling(r, p, cs, true))
		}
		if r.IntN(10) < 3 {
			bcc = append(bcc, spelling(r, p, cs, true))
		}
		if i > 0 || r.IntN(4) == 0 { // the sender is sometimes a recipient too
			for range 1 + r.IntN(2) {
				rcpt = append(rcpt, spelling(r, p, cs, false))
			}
		}
		var list []Cert
		for k := range r.IntN(4) {
			list = append(list, Cert{
				ID:        fmt.Sprintf("%s@%s#%d", p.local, p.domain, k),
				Owner:     spelling(r, p, cs, false),
				Profile:   profiles[r.IntN(len(profiles))],
				NotBefore: day0.Add(time.Duration(r.IntN(5)) * 24 * time.Hour),
				KeyAgree:  r.IntN(4) == 0,
			})
		}
		if len(list) > 0 {
			certs[spelling(r, p, cs, false)] = list
		}
		if i == 0 {
			senderCerts = list
		}
	}
	if len(rcpt) == 0 {
		rcpt = append(rcpt, spelling(r, world[1], cs, false))
	}
	r.Shuffle(len(rcpt), func(i, j int) { rcpt[i], rcpt[j] = rcpt[j], rcpt[i] })

	var b strings.Builder
	if r.IntN(3) == 0 {
		fmt.Fprintf(&b, "Received: from client.test by relay.test id 1\n\tfor <%s>; Sat, 28 Nov 2026 10:00:00 +0000\n", rcpt[r.IntN(len(rcpt))])
	}
	if r.IntN(3) == 0 {
		fmt.Fprintf(&b, "X-Original-To: %s\nDelivered-To: %s\n", rcpt[r.IntN(len(rcpt))], rcpt[r.IntN(len(rcpt))])
	}
	fmt.Fprintf(&b, "From: Alice <%s>\nSubject: test\n", spelling(r, world[0], cs, false))
	switch {
	case len(to) == 0 && r.IntN(2) == 0:
		b.WriteString("To: undisclosed-recipients:;\n")
	case len(to) > 1 && r.IntN(3) == 0:
		fmt.Fprintf(&b, "To: Team: %s;, %s\n", strings.Join(to[1:], ", "), to[0])
	case len(to) > 0:
		fmt.Fprintf(&b, "To: %s\n", strings.Join(to, ",\n "))
	}
	if len(cc) > 0 {
		fmt.Fprintf(&b, "Cc: %s\n", strings.Join(cc, ", "))
	}
	if len(bcc) > 0 {
		field := "Bcc"
		if r.IntN(5) == 0 {
			field = "Resent-Bcc"
		}
		fmt.Fprintf(&b, "%s: %s\n", field, strings.Join(bcc, ", "))
	}
	// Fields known and unknown, naming participants in every form.
	extras := []string{"Subject", "Keywords", "Comments", "Organization", "In-Reply-To", "References",
		"Thread-Hint", "Mail-Followup-To", "List-Help", "X-Note", "X-Mailer", "Delivered-To", "Envelope-To",
		"X-Envelope-Recipient", "Original-Recipient", "Return-Path", "Disposition-Notification-To",
		"Return-Receipt-To", "X-Confirm-Reading-To", "Received", "Content-Description"}
	for range r.IntN(5) {
		k := extras[r.IntN(len(extras))]
		if k == "Subject" || k == "In-Reply-To" || k == "References" {
			if strings.Contains(b.String(), "\n"+k+":") || strings.HasPrefix(b.String(), k+":") {
				k = "Comments"
			}
		}
		var vs []string
		for range 1 + r.IntN(3) {
			vs = append(vs, mention(r, world[r.IntN(len(world))], cs))
		}
		v := strings.Join(vs, ", ")
		if k == "Received" {
			v = "from h.test by relay.test for " + v + "; Sat, 28 Nov 2026 10:00:00 +0000"
		}
		fmt.Fprintf(&b, "%s: %s\n", k, v)
	}
	if r.IntN(8) == 0 {
		// A second instance of a field RFC 5322 allows once.
		b.WriteString([]string{"From: x@example.test\n", "Subject: again\n", "Cc: z@example.test\n"}[r.IntN(3)])
	}
	hdr := b.String()
	if r.IntN(4) == 0 {
		// A Resent- block on top: it names this copy's recipients.
		var rb strings.Builder
		fmt.Fprintf(&rb, "Resent-From: %s\n", spelling(r, world[0], cs, true))
		var rto, rbcc []string
		for _, p := range world[1:] {
			switch r.IntN(3) {
			case 0:
				rto = append(rto, spelling(r, p, cs, true))
			case 1:
				rbcc = append(rbcc, spelling(r, p, cs, true))
			}
		}
		if len(rto) > 0 {
			fmt.Fprintf(&rb, "Resent-To: %s\n", strings.Join(rto, ", "))
		}
		if len(rbcc) > 0 {
			fmt.Fprintf(&rb, "Resent-Bcc: %s\n", strings.Join(rbcc, ", "))
		}
		hdr = rb.String() + hdr
	}
	mailFrom := ""
	if r.IntN(4) != 0 {
		mailFrom = spelling(r, world[0], cs, false)
	}
	return Input{
		Header: header(hdr), MailFrom: mailFrom, RcptTo: rcpt,
		Certs: certs, SenderCerts: senderCerts, Policy: pol,
	}
}

func describe(in Input) string {
	var b strings.Builder
	for f := in.Header.Fields(); f.Next(); {
		fmt.Fprintf(&b, "  %s: %s\n", f.Key(), f.Value())
	}
	fmt.Fprintf(&b, "  MAIL FROM %q RCPT TO %q\n  policy %+v\n  certs %v\n  sender %v", in.MailFrom, in.RcptTo, in.Policy, in.Certs, in.SenderCerts)
	return b.String()
}

// TestPlanProperty checks CheckPrivacy on random plans of both modes.
func TestPlanProperty(t *testing.T) {
	seed := *propSeed
	r := rand.New(rand.NewPCG(seed, 0))
	modes := map[BccMode]int{}
	seen := map[string]int{}
	for i := range *propCases {
		in := genInput(r)
		modes[in.Policy.Bcc]++
		p, err := Make(in)
		if err != nil {
			if err := CheckRefusal(in, err); err != nil {
				t.Fatalf("seed %d case %d: %v\n%s", seed, i, err, describe(in))
			}
			var fe *FieldError
			if errors.As(err, &fe) {
				seen["refused "+fe.Err.Error()]++
			} else {
				seen["refused otherwise"]++
			}
			continue
		}
		for _, pk := range p.Packages {
			if len(pk.Edits.Dropped) > 0 {
				seen["field dropped"]++
				break
			}
		}
		if err := CheckPrivacy(in, p); err != nil {
			t.Fatalf("seed %d case %d: %v\n%s\nplan:\n%s", seed, i, err, describe(in), strings.Join(summary(p), "\n"))
		}
		for _, pk := range p.Packages {
			switch {
			case pk.Profile == "":
				seen["signed-only"]++
			case pk.Hidden && len(pk.Recipients) > 1:
				seen["group"]++
			case pk.Hidden:
				seen["hidden"]++
			case len(pk.Recipients) > 1:
				seen["visible shared"]++
			}
			if len(pk.Edits.Bcc) > 1 {
				seen["bcc list"]++
			}
		}
		for _, rf := range p.Refused {
			seen[fmt.Sprintf("refused dsn=%v", rf.DSN)]++
		}
		if len(p.Profiles) > 1 {
			seen["two profiles"]++
		}
	}
	for _, k := range []string{"signed-only", "group", "hidden", "visible shared", "bcc list", "refused dsn=true", "refused dsn=false", "two profiles",
		"field dropped", "refused " + ErrDuplicateField.Error(), "refused " + ErrHiddenInContent.Error()} {
		if seen[k] == 0 {
			t.Errorf("seed %d: generator never produced %q: %v", seed, k, seen)
		}
	}
	t.Logf("seed %d: %v", seed, seen)
	if modes[Individual] == 0 || modes[Group] == 0 {
		t.Fatalf("seed %d: modes not both covered: %v", seed, modes)
	}
}
