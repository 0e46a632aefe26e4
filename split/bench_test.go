package split

import (
	"fmt"
	"strings"
	"testing"
)

func benchInput(n int, mode BccMode) Input {
	rcpt := []string{"bob@x.test", "carol@y.test"}
	var bcc []string
	for i := range n {
		a := fmt.Sprintf("user%d@bcc.test", i)
		rcpt = append(rcpt, a)
		bcc = append(bcc, a)
	}
	h := base + "To: Bob <bob@x.test>\nCc: carol@y.test\n"
	if n > 0 {
		h += "Bcc: " + strings.Join(bcc, ",\n ") + "\n"
	}
	return Input{
		Header: header(h), MailFrom: "alice@example.test", RcptTo: rcpt,
		Certs: certsFor(rcpt...), SenderCerts: []Cert{cert("alice@example.test", "", 0)},
		Policy: Policy{Bcc: mode, SelfCopy: true},
	}
}

func BenchmarkMake(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		mode BccMode
	}{
		{"bcc=1/individual", 1, Individual},
		{"bcc=1000/individual", 1000, Individual},
		{"bcc=1000/group", 1000, Group},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := benchInput(bc.n, bc.mode)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Make(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchShapeHeader is the header bench/loadgen submits (issue 18's 10k and 50k shapes).
const benchShapeHeader = "From: Alice <alice@example.test>\nTo: bob@example.test\n%s" +
	"Subject: bench 50k #12345\nMessage-ID: <12345.1764770000@loadgen.test>\n" +
	"Date: Thu, 03 Dec 2026 14:51:00 +0000\nMIME-Version: 1.0\n" +
	"Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n"

// BenchmarkMakeShapes plans bench/run.sh's small shapes, once as the front end asks at end of
// DATA (no certificates, missing_cert = drop) and once as the pipeline seals: the split's
// share of the per-message cost the load benchmark measures.
func BenchmarkMakeShapes(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cc    string
		rcpts []string
	}{
		{"10k", "", []string{"bob@example.test"}},
		{"50k", "Cc: dave@example.test, erin@example.test\n", []string{"bob@example.test",
			"dave@example.test", "erin@example.test", "u01@example.test", "u02@example.test", "u03@example.test"}},
	} {
		h := header(fmt.Sprintf(benchShapeHeader, bc.cc))
		front := Input{Header: h, MailFrom: "alice@example.test", RcptTo: bc.rcpts, Policy: Policy{MissingCert: Drop}}
		seal := Input{Header: h, MailFrom: "alice@example.test", RcptTo: bc.rcpts, Certs: certsFor(bc.rcpts...),
			SenderCerts: []Cert{cert("alice@example.test", "", 0)}, Policy: Policy{SelfCopy: true}}
		for _, in := range []struct {
			name string
			in   Input
		}{{"front", front}, {"seal", seal}} {
			b.Run(bc.name+"/"+in.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Make(in.in); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
