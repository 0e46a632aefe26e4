package smime_test

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"appliance/smime"
)

// gen is a generated MIME entity with what it truly holds.
type gen struct {
	entity string
	// hidden: an envelope or a CMS type the appliance cannot account for sits somewhere in it.
	hidden bool
	// shape: "envelope" when the entity is an envelope, "signed" when it is signature layers
	// over an envelope, "" otherwise.
	shape string
}

var envLabels = []string{
	"application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
	"Application/X-PKCS7-MIME (client) ; SMIME-Type=\"enveloped-data\"",
	"application/pkcs7-mime; smime-type*0=envel; smime-type*1=oped-data",
	"application/octet-stream; name=\"msg.P7M\"",
	"application/pkcs7-mime",
	"application/pkcs7-mime; smime-type=signed-data",
	// mislabelled: must never be taken for plain
	"text/plain; charset=us-ascii",
	"application/octet-stream",
	"image/png; name=smime.p7m.png",
}

var plainLabels = []string{"text/plain", "text/html; charset=utf-8", "application/pdf", "application/octet-stream; name=a.bin"}

func encodeBody(r *rand.Rand, der []byte) (cte, body string) {
	switch r.Intn(4) {
	case 0:
		return "Content-Transfer-Encoding: quoted-printable\r\n", qpEncode(der)
	case 1:
		return "Content-Transfer-Encoding: 8bit\r\n", b64(der) // base64 the header does not declare
	case 2:
		return "", b64(der) // no encoding named: readers sniff
	}
	return "Content-Transfer-Encoding: BASE64\r\n", b64(der)
}

func leafOf(r *rand.Rand, label string, der []byte) string {
	cte, body := encodeBody(r, der)
	return "Content-Type: " + label + "\r\n" + cte + "\r\n" + body
}

func generate(r *rand.Rand, depth int, boundary *int) gen {
	k := r.Intn(9)
	if depth >= 4 && k >= 4 {
		k = r.Intn(4)
	}
	nextBoundary := func() string { *boundary++; return fmt.Sprintf("b%d", *boundary) }
	switch k {
	case 0: // plain leaf
		return gen{entity: "Content-Type: " + plainLabels[r.Intn(len(plainLabels))] + "\r\n\r\nsome text " + fmt.Sprint(r.Int()) + "\r\n"}
	case 1: // envelope under a random label
		label := envLabels[r.Intn(len(envLabels))]
		return gen{entity: leafOf(r, label, fakeEnvelope(r.Intn(2) == 0)), hidden: true, shape: "envelope"}
	case 2: // another CMS type
		der := []([]byte){contentInfo(oidEncrypted, []byte{2, 1, 0}), contentInfo(oidCompressed, []byte{2, 1, 0}), contentInfo(oidData, []byte{2, 1, 0})}[r.Intn(3)]
		return gen{entity: leafOf(r, envLabels[r.Intn(len(envLabels))], der), hidden: true}
	case 3: // a detached signature as an attachment
		return gen{entity: leafOf(r, "application/pkcs7-signature; name=smime.p7s", fakeSigned(oidData, nil))}
	case 4, 5: // multipart/mixed
		n := 1 + r.Intn(3)
		var parts []string
		g := gen{}
		for i := 0; i < n; i++ {
			c := generate(r, depth+1, boundary)
			parts = append(parts, c.entity)
			g.hidden = g.hidden || c.hidden
		}
		g.entity = multipart([]string{"multipart/mixed", "Multipart/Alternative", "multipart/related"}[r.Intn(3)], nextBoundary(), parts...)
		return g
	case 6: // multipart/signed over a child
		c := generate(r, depth+1, boundary)
		g := gen{hidden: c.hidden}
		if c.shape != "" {
			g.shape = "signed"
		}
		proto := []string{"application/pkcs7-signature", "application/x-pkcs7-signature", "Application/PKCS7-Signature"}[r.Intn(3)]
		g.entity = multipart("multipart/signed; protocol=\""+proto+"\"; micalg=sha-256", nextBoundary(), c.entity,
			leafOf(r, "application/pkcs7-signature; name=smime.p7s", fakeSigned(oidData, nil)))
		return g
	case 7: // opaque signed-data over a child
		c := generate(r, depth+1, boundary)
		g := gen{hidden: c.hidden}
		if c.shape != "" {
			g.shape = "signed"
		}
		der := fakeSigned(oidData, []byte(c.entity))
		if r.Intn(2) == 0 {
			der = fakeSignedBER(oidData, []byte(c.entity))
		}
		label := []string{"application/pkcs7-mime; smime-type=signed-data", "application/x-pkcs7-mime", "text/plain", "application/pkcs7-mime; smime-type=enveloped-data"}[r.Intn(4)]
		if !strings.Contains(label, "pkcs7") && g.shape != "" {
			g.shape = "" // mislabelled signature layer: not a shape to split
		}
		g.entity = leafOf(r, label, der)
		return g
	default: // a forwarded message
		c := generate(r, depth+1, boundary)
		return gen{entity: "Content-Type: message/rfc822\r\n\r\nFrom: x@example.test\r\nMIME-Version: 1.0\r\n" + c.entity, hidden: c.hidden}
	}
}

// TestClassifyProperty: over generated structures (nested multiparts, signature layers at any
// depth, envelopes and other CMS at any position under any label), the classifier says plain
// only when no envelope or unaccountable CMS exists anywhere, client-encrypted only for an
// envelope that is the whole message, and signed-over-encrypted only for signatures layers
// over one; everything else is refused with a reason.
func TestClassifyProperty(t *testing.T) {
	r := rand.New(rand.NewSource(16))
	counts := map[smime.Class]int{}
	for i := 0; i < 4000; i++ {
		b := 0
		g := generate(r, 0, &b)
		msg := top + g.entity
		c := smime.Classify([]byte(msg))
		counts[c.Class]++
		fail := func(why string) {
			t.Fatalf("case %d: %s: class %v (%s)\n%.3000s", i, why, c.Class, c.Reason, msg)
		}
		switch c.Class {
		case smime.Plain:
			if g.hidden {
				fail("plain, but it holds an envelope or unaccountable CMS")
			}
		case smime.ClientEncrypted:
			if g.shape != "envelope" {
				fail("client-encrypted, but the envelope is not the whole message")
			}
		case smime.SignedOverEncrypted:
			if g.shape != "signed" {
				fail("signed-over-encrypted, but not signatures over an envelope")
			}
		case smime.Refused:
			if c.Reason == "" {
				fail("refused without a reason")
			}
		}
	}
	t.Logf("classes: %v", counts)
	for _, cl := range []smime.Class{smime.Plain, smime.ClientEncrypted, smime.SignedOverEncrypted, smime.Refused} {
		if counts[cl] == 0 {
			t.Errorf("the generator made no %v message", cl)
		}
	}
}
