package e2e

import (
	"bytes"
	"context"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"mime"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
)

// propertySeedEnv overrides the property test's seed, to replay a failure it printed.
const propertySeedEnv = "APPLIANCE_PROPERTY_SEED"

// shape is the MIME structure of one generated message.
type shape int

const (
	shapePlain          shape = iota // text/plain
	shapeMultipart                   // nested multipart/mixed and alternative, an opaque attachment
	shapeClientSigned                // the client's multipart/signed over plain content
	shapeClientEnvelope              // the client's EnvelopedData at the top: split exactly
	shapeNestedEnvelope              // a client's envelope anywhere but the top: refused
	shapeSignedOverEnv               // opaque or multipart/signed over the client's envelope
	shapes
)

var shapeNames = [...]string{"plain", "multipart", "client-signed", "client-envelope", "nested-envelope", "signed-over-encrypted"}

// TestPrivacyProperty is the privacy property through the real daemon on SoftHSM2, submitted
// with a real SMTP client: generated messages with random To/Cc/Bcc sets, random known and
// unknown header fields naming the participants in every spelling (angle brackets, display
// names, quoted local parts, comments, RFC 2047 encoded words, several per clause, group
// syntax), and random structures (plain, nested multipart, the client's own multipart/signed,
// the client's envelope at the top, nested in a multipart or a message/rfc822, and under an
// opaque or multipart/signed signature), under both Bcc modes and both signed_over_encrypted
// policies. For every message either the appliance refuses it at end of DATA with 5.x.x and a
// reason, or every package it relays passes the independent checker (no address, RecipientInfo,
// originatorInfo or certificate of anyone outside the package's visible set, in any header
// layer, the CMS or the envelope; every recipient reached exactly once and able to decrypt) and
// a stricter scan: no hidden participant's name appears in any header of any layer the
// recipient can read, decoded or not. Shapes whose outcome is certain are held to it (a nested
// envelope is refused, a plain message is relayed). Every fifth message also goes through
// `appliance seal` with the same configuration: it must refuse what serve refused (writing no
// package) and otherwise make packages that pass the same checks with the same plan (recipients
// and RecipientInfo owners of each package). The seed is fixed; set
// APPLIANCE_PROPERTY_SEED to replay another, and every failure prints the one in use.
func TestPrivacyProperty(t *testing.T) {
	t.Parallel()
	seed := uint64(20261203)
	if s := os.Getenv(propertySeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", propertySeedEnv, err)
		}
		seed = v
	}
	const perMode = 100
	const sealEvery = 5 // every fifth message also goes through `appliance seal`
	for _, mode := range []struct{ bcc, soe string }{{"individual", "refuse"}, {"group", "resign"}} {
		t.Run(mode.bcc+"/"+mode.soe, func(t *testing.T) {
			t.Parallel()
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("replay with %s=%d", propertySeedEnv, seed)
				}
			})
			r := newRig(t, func(c *Config) { c.Policy.Bcc = mode.bcc; c.Policy.SignedOverEncrypted = mode.soe })
			g := &gen{t: t, rnd: mrand.New(mrand.NewPCG(seed, uint64(len(mode.bcc)))),
				f: forge{t: t, pki: r.checker.PKI, dir: t.TempDir()}}
			tally := map[string]int{}
			bin := Build(t)
			for i := range perMode {
				m := g.message()
				at := fmt.Sprintf("seed %d, message %d (%s, to %v cc %v bcc %v)", seed, i, shapeNames[m.shape], m.to, m.cc, m.bcc)
				outcome, plan := r.runProperty(t, at, m, mode.soe == "resign", nil)
				tally[outcome]++
				if i%sealEvery == 0 {
					// The other door: `appliance seal` on the same bytes must decide the same.
					txs, err := r.sealPackages(t, bin, m.rcpt(), m.raw)
					switch {
					case err != nil && plan != nil:
						t.Fatalf("%s: serve relayed it, seal refused: %v\n%s", at, err, m.raw)
					case err == nil && plan == nil:
						t.Fatalf("%s: serve refused it, seal made %d packages\n%s", at, len(txs), m.raw)
					case err == nil:
						if _, sealed := r.runProperty(t, at+" through seal", m, mode.soe == "resign", txs); !slices.Equal(sealed, plan) {
							t.Fatalf("%s: seal's plan differs from serve's:\nseal:  %q\nserve: %q", at, sealed, plan)
						}
					}
					tally["also sealed"]++
				}
			}
			t.Logf("outcomes: %v", tally)
		})
	}
}

// genMessage is one generated submission and what it is.
type genMessage struct {
	shape       shape
	to, cc, bcc []string
	raw         []byte
	content     []byte // what the recipients' verified signed content must be (body compared); nil: skip
	named       bool   // some header field other than the recipient fields names a participant
}

// gen makes random messages from one seeded source.
type gen struct {
	t   *testing.T
	rnd *mrand.Rand
	f   forge
}

// propertyPeople are the possible recipients: RSA keys of two sizes, heidi with two
// certificates, frank and peggy with EC keys (P-256, P-384: a package of their own each).
var propertyPeople = []string{bob, carol, dave, erin, heidi, frank, peggy}

// display names that carry the local part, so a leaked display name is caught by the name scan.
var displayNames = map[string]string{bob: "Bob Builder", carol: "Carol Singer", dave: "Dave Hidden", erin: "Erin Quiet", heidi: "Heidi Mountain", alice: "Alice Sender",
	frank: "Frank Curve", peggy: "Peggy Curve"}

// mailbox writes a as a recipient field writes it: bare, angle, display name (plain, quoted,
// encoded word) or a trailing comment.
func (g *gen) mailbox(a string) string {
	n := displayNames[a]
	switch g.rnd.IntN(6) {
	case 0:
		return a
	case 1:
		return "<" + a + ">"
	case 2:
		return n + " <" + a + ">"
	case 3:
		return `"` + n + `, (team)" <` + a + ">"
	case 4:
		return mime.QEncoding.Encode("utf-8", n+" é") + " <" + a + ">"
	default:
		return a + " (" + n + ")"
	}
}

// mention writes a the way it may hide in any field: every spelling a parser might miss.
func (g *gen) mention(a string) string {
	l, d, _ := strings.Cut(a, "@")
	switch g.rnd.IntN(9) {
	case 0:
		return "<" + a + ">"
	case 1:
		return "(" + a + ")"
	case 2:
		return "=?utf-8?q?" + strings.Replace(a, "@", "=40", 1) + "?="
	case 3:
		return "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(displayNames[a]+" <"+a+">")) + "?="
	case 4:
		return `"` + l + `"@` + strings.ToUpper(d)
	case 5:
		return l + " (x) @ " + d
	case 6:
		return a + ", " + strings.ToUpper(a)
	case 7:
		return displayNames[a] + " <" + a + ">"
	default:
		return strings.ToUpper(a)
	}
}

// fields are header fields that may name a participant: trace, delivery, receipt requests,
// known informational fields and unknown ones.
var propertyFields = []string{"Keywords", "Comments", "Subject", "Reply-To", "Mail-Followup-To", "Mail-Reply-To",
	"X-Original-To", "X-Envelope-To", "Envelope-To", "Delivered-To", "X-Delivered-To", "X-Forwarded-To", "X-Rcpt-To",
	"Original-Recipient", "Apparently-To", "Disposition-Notification-To", "Return-Receipt-To", "Received", "Return-Path",
	"Thread-Hint", "X-Mailer", "Organization", "X-Anything"}

func (g *gen) pick(l []string) string { return l[g.rnd.IntN(len(l))] }

// message makes one random submission from alice.
func (g *gen) message() genMessage {
	var m genMessage
	for _, p := range propertyPeople {
		switch g.rnd.IntN(4) {
		case 0:
			m.to = append(m.to, p)
		case 1:
			m.cc = append(m.cc, p)
		case 2:
			m.bcc = append(m.bcc, p)
		}
	}
	if len(m.to)+len(m.cc)+len(m.bcc) == 0 {
		m.bcc = append(m.bcc, g.pick(propertyPeople))
	}
	m.shape = shape(g.rnd.IntN(int(shapes)))

	var h strings.Builder
	h.WriteString("From: " + g.mailbox(alice) + "\r\n")
	list := func(l []string) string {
		var out []string
		for _, a := range l {
			out = append(out, g.mailbox(a))
		}
		if len(out) > 1 && g.rnd.IntN(4) == 0 {
			return "team: " + strings.Join(out, ", ") + ";"
		}
		return strings.Join(out, ",\r\n ")
	}
	if len(m.to) > 0 {
		h.WriteString("To: " + list(m.to) + "\r\n")
	} else {
		h.WriteString("To: undisclosed-recipients:;\r\n")
	}
	if len(m.cc) > 0 {
		h.WriteString("Cc: " + list(m.cc) + "\r\n")
	}
	if len(m.bcc) > 0 && g.rnd.IntN(3) != 0 {
		h.WriteString("Bcc: " + list(m.bcc) + "\r\n")
	}
	subject := false
	// Fields name the sender and the participants, hidden ones included: a hidden participant
	// must reach no one else. (A person the message does not address at all is the sender's
	// business, like the body.)
	everyone := append(append(append([]string{alice}, m.to...), m.cc...), m.bcc...)
	for range g.rnd.IntN(5) {
		k := g.pick(propertyFields)
		if k == "Subject" || k == "Reply-To" || k == "Return-Path" {
			if subject || strings.Contains(h.String(), "\r\n"+k+":") {
				continue
			}
			subject = subject || k == "Subject"
		}
		var vs []string
		for range 1 + g.rnd.IntN(3) {
			vs = append(vs, g.mention(g.pick(everyone)))
		}
		v := strings.Join(vs, ", ")
		switch k {
		case "Received":
			v = "from h.example.test by relay.example.test with ESMTP id 1x\r\n\tfor " + vs[0] + "; Sat, 28 Nov 2026 09:00:00 +0000"
		case "Return-Path":
			v = "<" + g.pick(everyone) + ">"
		case "Subject", "Keywords", "Comments":
			v = "about " + v
		}
		h.WriteString(k + ": " + v + "\r\n")
		m.named = true
	}
	if !subject {
		h.WriteString("Subject: property " + strconv.Itoa(g.rnd.IntN(1000)) + "\r\n")
	}
	h.WriteString("Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <p" + strconv.Itoa(g.rnd.IntN(1e9)) + "@client.example.test>\r\n")

	names := []string{"alice"}
	for _, a := range everyone[1:] {
		names = append(names, g.f.pki.Names(a)...)
	}
	var entity []byte // the MIME entity below the message header (its own Content-* lines first)
	switch m.shape {
	case shapePlain:
		entity = []byte("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + g.text())
	case shapeMultipart:
		entity = append([]byte("MIME-Version: 1.0\r\n"), g.multipart(1+g.rnd.IntN(3))...)
	case shapeClientSigned:
		entity = append([]byte("MIME-Version: 1.0\r\n"), g.f.sign("alice", g.leaf(2))...)
	case shapeClientEnvelope, shapeSignedOverEnv, shapeNestedEnvelope:
		inner := g.leaf(2)
		m.content = inner
		env := g.envelope(g.f.sign("alice", inner), names, everyone)
		switch m.shape {
		case shapeClientEnvelope:
			entity = env
		case shapeSignedOverEnv:
			if g.rnd.IntN(2) == 0 {
				entity = append([]byte("MIME-Version: 1.0\r\n"), g.f.sign("alice", env)...)
			} else {
				entity = append([]byte("MIME-Version: 1.0\r\n"), g.f.run(env, "cms", "-sign", "-nodetach", "-stream",
					"-signer", g.f.pki.File("alice.pem"), "-inkey", g.f.pki.File("alice.key"))...)
			}
		default:
			wrapped := env
			if g.rnd.IntN(2) == 0 {
				wrapped = []byte("Content-Type: message/rfc822\r\n\r\nFrom: alice@example.test\r\nSubject: fwd\r\n" + string(env))
			}
			entity = []byte("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"n0\"\r\n\r\n--n0\r\n" +
				"Content-Type: text/plain\r\n\r\n" + g.text() + "--n0\r\n" + string(wrapped) + "\r\n--n0--\r\n")
		}
	}
	m.raw = append([]byte(h.String()), entity...)
	if m.content == nil {
		m.content = m.raw
	}
	return m
}

// envelope encrypts entity for the named users with openssl, as a client does, and now and then
// adds what a client may add and no recipient needs: an originatorInfo carrying participants'
// certificates and unprotectedAttrs naming a participant (a hidden one included).
func (g *gen) envelope(entity []byte, names, everyone []string) []byte {
	args := []string{"cms", "-encrypt", "-aes256", "-binary", "-outform", "DER"}
	for _, n := range names {
		args = append(args, g.f.pki.File(n+".pem"))
	}
	der := g.f.run(entity, args...)
	if g.rnd.IntN(2) == 0 {
		der = g.addExtras(der, everyone)
	}
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(der)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// addExtras rewrites a DER ContentInfo holding an EnvelopedData with an originatorInfo (the
// certificates of one to three random participants) and unprotectedAttrs (an emailAddress
// attribute naming a random participant), version 2 as RFC 5652 section 6.1 wants.
func (g *gen) addExtras(der []byte, everyone []string) []byte {
	g.t.Helper()
	var ci struct {
		Type    asn1.ObjectIdentifier
		Content asn1.RawValue `asn1:"explicit,tag:0"`
	}
	if _, err := asn1.Unmarshal(der, &ci); err != nil {
		g.t.Fatal(err)
	}
	var seq asn1.RawValue
	if _, err := asn1.Unmarshal(ci.Content.Bytes, &seq); err != nil {
		g.t.Fatal(err)
	}
	var elems []asn1.RawValue
	for rest := seq.Bytes; len(rest) > 0; {
		var e asn1.RawValue
		var err error
		if rest, err = asn1.Unmarshal(rest, &e); err != nil {
			g.t.Fatal(err)
		}
		elems = append(elems, e)
	}
	if len(elems) != 3 { // version, recipientInfos, encryptedContentInfo
		g.t.Fatalf("envelope has %d elements, want 3", len(elems))
	}
	var certs []byte
	for range 1 + g.rnd.IntN(3) {
		for _, n := range g.f.pki.Names(g.pick(everyone)) {
			c, err := readCert(g.f.pki.File(n + ".pem"))
			if err != nil {
				g.t.Fatal(err)
			}
			certs = append(certs, c.Raw...)
		}
	}
	must := func(b []byte, err error) []byte {
		if err != nil {
			g.t.Fatal(err)
		}
		return b
	}
	certSet := must(asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: certs}))
	originator := must(asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: certSet}))
	value := must(asn1.Marshal(asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(g.pick(everyone))}))
	attr := must(asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values asn1.RawValue
	}{asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, asn1.RawValue{Tag: asn1.TagSet, IsCompound: true, Bytes: value}}))
	attrs := must(asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: attr}))
	body := slices.Concat(must(asn1.Marshal(2)), originator, elems[1].FullBytes, elems[2].FullBytes, attrs)
	inner := must(asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: body}))
	ci.Content = asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: inner}
	return must(asn1.Marshal(ci))
}

// text is a line or a few of body text naming nobody.
func (g *gen) text() string {
	words := []string{"the", "numbers", "for", "the", "quarter", "are", "attached", "see", "below", "thanks"}
	var b strings.Builder
	for range 1 + g.rnd.IntN(4) {
		for range 3 + g.rnd.IntN(8) {
			b.WriteString(g.pick(words) + " ")
		}
		b.WriteString("\r\n")
	}
	return b.String()
}

// leaf is a text part or a small multipart, with its Content-Type.
func (g *gen) leaf(depth int) []byte {
	if depth > 0 && g.rnd.IntN(2) == 0 {
		return g.multipart(depth)
	}
	return []byte("Content-Type: text/plain; charset=utf-8\r\n\r\n" + g.text())
}

// multipart is a multipart/mixed or alternative entity nested up to depth, with an opaque
// base64 attachment now and then.
func (g *gen) multipart(depth int) []byte {
	b := fmt.Sprintf("b%d-%d", depth, g.rnd.IntN(1e6))
	sub := g.pick([]string{"mixed", "alternative", "related"})
	var out bytes.Buffer
	fmt.Fprintf(&out, "Content-Type: multipart/%s;\r\n boundary=\"%s\"\r\n\r\npreamble\r\n", sub, b)
	for range 1 + g.rnd.IntN(3) {
		out.WriteString("--" + b + "\r\n")
		switch {
		case depth > 1 && g.rnd.IntN(2) == 0:
			out.Write(g.multipart(depth - 1))
		case g.rnd.IntN(3) == 0:
			data := make([]byte, 40+g.rnd.IntN(200))
			for i := range data {
				data[i] = byte(g.rnd.IntN(256))
			}
			out.WriteString("Content-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: base64\r\n" +
				"Content-Disposition: attachment; filename=data.bin\r\n\r\n" + base64.StdEncoding.EncodeToString(data) + "\r\n")
		default:
			out.WriteString("Content-Type: text/plain; charset=utf-8\r\n\r\n" + g.text())
		}
	}
	out.WriteString("--" + b + "--\r\n")
	return out.Bytes()
}

func (m genMessage) rcpt() []string {
	return append(append(append([]string{}, m.to...), m.cc...), m.bcc...)
}

// runProperty submits m and judges the outcome, or with sealed judges seal's packages of m. It
// returns a label for the tally and the plan (each package's recipients and RecipientInfo
// owners; nil when m was refused).
func (r *rig) runProperty(t *testing.T, at string, m genMessage, resign bool, sealed []sink.Transaction) (string, []string) {
	t.Helper()
	rcpt := m.rcpt()
	mustRefuse := m.shape == shapeNestedEnvelope || m.shape == shapeSignedOverEnv && !resign
	if sealed != nil {
		return "sealed", r.judgePackages(t, at, m, rcpt, sealed)
	}
	r.sink.Reset()
	res, err := SubmitGo(r.daemon.Addr, alice, rcpt, m.raw)
	if err != nil || res.Mail != nil {
		t.Fatalf("%s: submit: %v, MAIL %v", at, err, res.Mail)
	}
	for a, e := range res.Rcpt {
		if e != nil {
			t.Fatalf("%s: RCPT %s: %v", at, a, e)
		}
	}
	mustRelay := !m.named && (m.shape == shapePlain || m.shape == shapeMultipart || m.shape == shapeClientEnvelope ||
		m.shape == shapeSignedOverEnv && resign)
	if res.Data != nil {
		var se *smtp.SMTPError
		if !errors.As(res.Data, &se) || se.Code/100 != 5 || se.EnhancedCode[0] != 5 || strings.TrimSpace(se.Message) == "" {
			t.Fatalf("%s: DATA %v, want relayed or refused with 5xx 5.x.x and a reason\n%s", at, res.Data, m.raw)
		}
		if mustRelay {
			t.Fatalf("%s: refused %v, want relayed\n%s", at, res.Data, m.raw)
		}
		// Nothing of a refused message reaches the next hop.
		time.Sleep(100 * time.Millisecond)
		if txs := r.sink.Transactions(); len(txs) != 0 {
			t.Fatalf("%s: refused (%v) but %d transactions reached the next hop", at, res.Data, len(txs))
		}
		t.Logf("%s: refused: %s", at, se.Message)
		return "refused " + shapeNames[m.shape], nil
	}
	if mustRefuse {
		t.Fatalf("%s: relayed, want refused\n%s", at, m.raw)
	}
	// An EC recipient (frank, peggy) gets a package of its own in either mode.
	want, hidden, visible := 0, 0, 0
	for _, a := range m.bcc {
		if a == frank || a == peggy {
			want++
		} else {
			hidden++
		}
	}
	for _, a := range append(slices.Clone(m.to), m.cc...) {
		if a == frank || a == peggy {
			want++
		} else {
			visible++
		}
	}
	if r.cfg.Policy.Bcc == "group" && hidden > 0 {
		hidden = 1
	}
	want += hidden + min(visible, 1)
	txs, err := WaitPackages(r.sink, want, 90*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatalf("%s: %v (got %v)\n%s", at, err, rcptSets(txs), m.raw)
	}
	return "relayed " + shapeNames[m.shape], r.judgePackages(t, at, m, rcpt, txs)
}

// judgePackages holds the packages of m to the property and returns the plan.
func (r *rig) judgePackages(t *testing.T, at string, m genMessage, rcpt []string, txs []sink.Transaction) []string {
	t.Helper()
	if m.shape == shapeSignedOverEnv {
		for i := range txs {
			txs[i] = r.unwrapResigned(t, at, txs[i])
		}
	}
	exp := Expect{From: alice, To: m.to, Cc: m.cc, Bcc: m.bcc, Rcpt: rcpt, GroupBcc: r.cfg.Policy.Bcc == "group", Message: m.content}
	pkgs, err := r.checker.Check(context.Background(), exp, txs)
	if err != nil {
		t.Fatalf("%s:\n%s\n%v", at, m.raw, err)
	}
	var plan []string
	for _, p := range pkgs {
		if p.Kind != Encrypted {
			t.Fatalf("%s: package for %v is %s", at, p.Tx.RcptTo, p.Kind)
		}
		if leak := hiddenNames(exp, p); leak != "" {
			t.Fatalf("%s: package for %v: %s\n%s", at, p.Tx.RcptTo, leak, m.raw)
		}
		if leak := hiddenInDER(exp, p); leak != "" {
			t.Fatalf("%s: package for %v: %s\n%s", at, p.Tx.RcptTo, leak, m.raw)
		}
		plan = append(plan, fmt.Sprintf("rcpt=%s ri=%s", strings.Join(sorted(p.Tx.RcptTo), ","), strings.Join(p.OwnerNames, ",")))
	}
	slices.Sort(plan)
	return plan
}

// hiddenNames scans every header layer a package's recipients can read (the outer header, the
// signed content's header and, under header protection, the message inside) for the local part
// of any participant outside the visible set of one of its recipients, decoded or not: a
// spelling the checker's address pattern misses ("dave"@EXAMPLE.TEST, dave (x) @ example.test,
// a display name) still names the person. The generated bodies name nobody.
func hiddenNames(exp Expect, p Package) string {
	var headers []string
	if h, _, ok := bytes.Cut(p.Tx.Data, []byte("\r\n\r\n")); ok {
		headers = append(headers, string(h))
	}
	if h, rest, ok := bytes.Cut(crlf(p.Content), []byte("\r\n\r\n")); ok {
		headers = append(headers, string(h))
		if mt, _, _ := mime.ParseMediaType(headerValue(string(h), "Content-Type")); mt == "message/rfc822" {
			if h2, _, ok := bytes.Cut(rest, []byte("\r\n\r\n")); ok {
				headers = append(headers, string(h2))
			}
		}
	}
	hidden := hiddenSet(exp)
	for _, r := range p.Tx.RcptTo {
		visible := visibleTo(exp, norm(r), hidden)
		for _, who := range propertyPeople {
			if visible == nil || visible[who] {
				continue
			}
			l, _, _ := strings.Cut(who, "@")
			for _, h := range headers {
				text := h
				if dec, err := new(mime.WordDecoder).DecodeHeader(h); err == nil {
					text += "\n" + dec
				}
				if i := strings.Index(strings.ToLower(text), l); i >= 0 {
					return fmt.Sprintf("names %q (hidden from %q) in a header: %q", l, r, lineAround(text, i))
				}
			}
		}
	}
	return ""
}

// hiddenInDER looks for the address of anyone outside a recipient's visible set in the bytes of
// the package's CMS: a certificate (in originatorInfo or anywhere else) or an attribute that
// names a hidden participant holds the address in clear, whatever the checker parses.
func hiddenInDER(exp Expect, p Package) string {
	_, body, ok := bytes.Cut(p.Tx.Data, []byte("\r\n\r\n"))
	if !ok {
		return "no body"
	}
	der, err := base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, string(body)))
	if err != nil {
		return fmt.Sprintf("body is not base64: %v", err)
	}
	der = bytes.ToLower(der)
	hidden := hiddenSet(exp)
	for _, r := range p.Tx.RcptTo {
		visible := visibleTo(exp, norm(r), hidden)
		for _, who := range propertyPeople {
			if visible != nil && !visible[who] && bytes.Contains(der, []byte(who)) {
				return fmt.Sprintf("its CMS holds %q (hidden from %q) in clear", who, r)
			}
		}
	}
	return ""
}

func headerValue(h, key string) string {
	for _, line := range strings.Split(h, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), key) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func lineAround(s string, i int) string {
	start := strings.LastIndex(s[:i], "\n") + 1
	end := strings.Index(s[i:], "\n")
	if end < 0 {
		return s[start:]
	}
	return s[start : i+end]
}

// unwrapResigned checks the appliance's own signature over a re-signed package (openssl verifies
// it, the signer is the sender, it carries no certificate of anyone but the sender) and returns the
// transaction with the envelope inside in place of the signed layer, for the checker to judge.
func (r *rig) unwrapResigned(t *testing.T, at string, tx sink.Transaction) sink.Transaction {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "pkg.eml")
	if err := os.WriteFile(in, tx.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	pki := r.checker.PKI
	inner := filepath.Join(dir, "inner.eml")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if out, err := openssl(ctx, "cms", "-verify", "-CAfile", pki.File("roots.pem"), "-in", in, "-out", inner,
		"-signer", filepath.Join(dir, "signer.pem"), "-certsout", filepath.Join(dir, "certs.pem")); err != nil {
		t.Fatalf("%s: package for %v: openssl does not verify the outer signature: %v %s", at, tx.RcptTo, err, out)
	}
	for _, f := range []string{"signer.pem", "certs.pem"} {
		certs, err := readCerts(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range certs {
			if c.IsCA {
				continue
			}
			if name, ok := pki.CertOwner(c); !ok || norm(pki.Address(name)) != alice {
				t.Fatalf("%s: package for %v: outer signature carries %q, not only the sender's certificate", at, tx.RcptTo, c.Subject)
			}
		}
	}
	entity, err := os.ReadFile(inner)
	if err != nil {
		t.Fatal(err)
	}
	entity = crlf(entity)
	hdr, _, _ := bytes.Cut(tx.Data, []byte("\r\n\r\n"))
	var kept []string
	for _, line := range strings.SplitAfter(string(hdr)+"\r\n", "\r\n") {
		if line == "" {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(kept) > 0 && kept[len(kept)-1] != "" {
				kept[len(kept)-1] += line
			}
			continue
		}
		k, _, _ := strings.Cut(line, ":")
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(k, "content-") || k == "mime-version" {
			kept = append(kept, "") // drops its continuation lines too
			continue
		}
		kept = append(kept, line)
	}
	out := tx
	out.Data = slices.Concat([]byte(strings.Join(kept, "")), entity)
	return out
}
