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
