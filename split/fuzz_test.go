package split

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"
)

// fuzzInput builds an Input from raw header bytes and a newline-separated
// envelope; flags pick the policy and which recipients have certificates.
func fuzzInput(raw []byte, mailFrom, rcpts string, flags uint16) (Input, bool) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(append(raw, "\r\n\r\n"...))))
	if err != nil {
		return Input{}, false
	}
	pol := Policy{
		Bcc:                    BccMode(flags & 1),
		MissingCert:            MissingCert(flags >> 1 & 3 % 3),
		CertChoice:             CertChoice(flags >> 3 & 1),
		SelfCopy:               flags&16 != 0,
		KeepBcc:                flags&32 != 0,
		CaseSensitiveLocalPart: flags&64 != 0,
	}
	if flags&128 != 0 {
		pol.DomainProfiles = map[string]string{"m.test": "modern"}
	}
	in := Input{Header: h, MailFrom: mailFrom, Certs: map[string][]Cert{}, Policy: pol}
	for i, r := range strings.Split(rcpts, "\n") {
		if i == 64 {
			break
		}
		in.RcptTo = append(in.RcptTo, r)
		// Certificates for some recipients, in two profiles; the bit
		// pattern rotates with flags so every recipient can go either way.
		if (flags>>8)&(1<<(i%8)) == 0 {
			continue
		}
		n, err := Normalize(r, pol.CaseSensitiveLocalPart)
		if err != nil {
			continue
		}
		profile := []string{"", "compat", "modern"}[i%3]
		in.Certs[n] = append(in.Certs[n], Cert{ID: fmt.Sprintf("%s#%d", n, i), Owner: r, Profile: profile, NotBefore: day0.AddDate(0, 0, i%4)})
	}
	if n, err := Normalize(mailFrom, pol.CaseSensitiveLocalPart); err == nil {
		in.SenderCerts = []Cert{{ID: "sender:" + n, Owner: mailFrom}}
	}
	return in, true
}

// FuzzMake: Make never panics, every plan it returns passes CheckPrivacy, and
// every refusal states a reason CheckRefusal finds true.
func FuzzMake(f *testing.F) {
	seeds := []struct{ hdr, from, rcpt string }{
		{base + "To: bob@x.test\r\nBcc: carol@y.test\r\n", "alice@example.test", "bob@x.test\ncarol@y.test"},
		{base + "To: undisclosed-recipients:;\r\n", "alice@example.test", "bob@x.test\nBOB@X.test\ncarol@y.test"},
		{base + "To: Friends: bob@x.test, \"C\" <carol@y.test>;\r\nCc: dave@m.test\r\n", "", "bob@x.test\ncarol@y.test\ndave@m.test\nerin@m.test"},
		{"Received: from a by b id 1\r\n\tfor <carol@y.test>; Sat, 1 Jan 2026\r\nX-Original-To: carol@y.test\r\n" + base + "Bcc: alice@example.test\r\n", "alice@example.test", "alice@example.test\ncarol@y.test"},
		{base + "To: \"bob b\"@x.test (c)\r\nResent-To: erin@m.test\r\nResent-Bcc: frank@z.test\r\n", "<alice@example.test>", "bob b@x.test\nerin@m.test\nfrank@z.test"},
		{"Resent-From: alice@example.test\r\nResent-To: bob@x.test\r\nResent-Bcc: carol@y.test\r\n" + base + "To: dave@m.test (cc carol@y.test)\r\nKeywords: =?utf-8?q?carol=40y.test?=\r\nX-Note: carol@y.test\r\n", "alice@example.test", "bob@x.test\ncarol@y.test"},
		{base + "To: bob@x.test\r\nTo: carol@y.test\r\nContent-Description: carol (x) @ y.test\r\n", "alice@example.test", "bob@x.test\ncarol@y.test"},
		{base + "To: bob@x.test\r\nBcc: carol@y.test\r\nContent-Description: \"carol\"@Y.test\r\n", "alice@example.test", "bob@x.test\ncarol@y.test"},
	}
	for i, s := range seeds {
		f.Add([]byte(strings.ReplaceAll(s.hdr, "\r\n", "\n")), s.from, s.rcpt, uint16(i*0x1f3d))
		f.Add([]byte(s.hdr), s.from, s.rcpt, uint16(0xff00|i*37))
	}
	f.Fuzz(func(t *testing.T, raw []byte, mailFrom, rcpts string, flags uint16) {
		in, ok := fuzzInput(raw, mailFrom, rcpts, flags)
		if !ok {
			return
		}
		p, err := Make(in)
		if err != nil {
			if err := CheckRefusal(in, err); err != nil {
				t.Fatal(err)
			}
			return
		}
		if err := CheckPrivacy(in, p); err != nil {
			t.Fatalf("%v\nplan:\n%s", err, strings.Join(summary(p), "\n"))
		}
	})
}
