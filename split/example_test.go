package split_test

import (
	"bufio"
	"fmt"
	"strings"

	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

func ExampleMake() {
	raw := "From: alice@example.test\r\nTo: bob@x.test\r\nBcc: carol@y.test\r\n\r\n"
	h, _ := textproto.ReadHeader(bufio.NewReader(strings.NewReader(raw)))
	in := split.Input{
		Header:   h,
		MailFrom: "alice@example.test",
		RcptTo:   []string{"bob@x.test", "carol@y.test", "dave@z.test"},
		Certs: map[string][]split.Cert{
			"bob@x.test":   {{ID: "b1", Owner: "bob@x.test"}},
			"carol@y.test": {{ID: "c1", Owner: "carol@y.test", Profile: "modern"}},
		},
		Policy: split.Policy{MissingCert: split.Drop},
	}
	plan, err := split.Make(in)
	if err != nil {
		panic(err)
	}
	for _, p := range plan.Packages {
		fmt.Println(p.Recipients, p.Profile, len(p.Certs), "hidden:", p.Hidden)
	}
	for _, r := range plan.Refused {
		fmt.Println(r.Recipient, r.Code, r.Enhanced, "dsn:", r.DSN)
	}
	fmt.Println("encryptions:", plan.Profiles)
	fmt.Println(split.CheckPrivacy(in, plan))
	// Output:
	// [bob@x.test] compat 1 hidden: false
	// [carol@y.test] modern 1 hidden: true
	// dave@z.test 550 5.7.1 dsn: true
	// encryptions: [compat modern]
	// <nil>
}
