package queue

import (
	"bufio"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func FuzzReadHeader(f *testing.F) {
	env, _ := json.Marshal(Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}})
	f.Add([]byte(msgMagic + string(env) + "\nbody\r\n"))
	f.Add([]byte(msgMagic + "{}\n"))
	f.Add([]byte(msgMagic + `{"RcptTo":[]}` + "\n"))
	f.Add([]byte("From: x\r\n\r\nbody"))
	f.Add([]byte(msgMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		env, err := readHeader(br)
		if err != nil {
			return
		}
		if len(env.RcptTo) == 0 {
			t.Fatal("accepted an envelope without recipients")
		}
		// What follows the header is the body, byte for byte.
		rest, _ := br.Peek(br.Buffered())
		if !bytes.HasSuffix(data, rest) {
			t.Fatal("body does not start right after the header")
		}
	})
}

// Reply text comes from remote servers; whatever it holds, the DSN keeps one
// block per failed recipient and no injected fields.
func FuzzDSN(f *testing.F) {
	f.Add("c@example.test", "smtp; 550 5.1.1 no such user")
	f.Add("c@example.test", "smtp; 550 x\r\n\r\nFinal-Recipient: rfc822; b@example.test")
	f.Add("c@example.test\r\nBcc: b@example.test", "x")
	f.Add("ü@example.test", "\x00\x7f\u2028")
	f.Fuzz(func(t *testing.T, addr, diag string) {
		d := &dsn{hostname: "relay.example.test", id: "x", sender: "a@example.test", now: time.Unix(0, 0),
			arrival: time.Unix(0, 0), rcpts: []*rcptRecord{{Addr: addr, Status: "5.0.0", Diag: diag}}}
		var b bytes.Buffer
		if _, err := d.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if n := strings.Count(out, "\r\nFinal-Recipient:"); n != 1 {
			t.Fatalf("%d Final-Recipient fields", n)
		}
		if strings.Contains(out, "\r\nBcc:") {
			t.Fatal("header injected")
		}
		for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if strings.ContainsAny(line, "\r\n") || len(line) > 998 {
				t.Fatalf("bad line %q", line)
			}
		}
	})
}
