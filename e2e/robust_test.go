package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/internal/sink"
)

// line is one thing sent on a raw connection and the reply wanted: code 0 accepts any reply (the
// point is that there is one), a round hundred (500) any reply of that class, enh "" any enhanced
// code.
type line struct {
	cmd  string // a command, sent with CRLF
	data string // or raw bytes, sent as they are
	code int
	enh  string
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	r := newRig(t, func(c *Config) {
		c.SMTP.MaxMessageBytes = 64 << 10
		c.SMTP.MaxRecipients = 3
	})
	mail := line{cmd: "MAIL FROM:<" + alice + ">", code: 250}
	rcpt := func(a string) line { return line{cmd: "RCPT TO:<" + a + ">", code: 250} }
	data := line{cmd: "DATA", code: 354}
	bareLF := "From: " + alice + "\nTo: " + carol + "\nSubject: bare lf\n\nline one\nline two\n"
	tests := []struct {
		name  string
		lines []line
		// When the last reply is 250, the message must be delivered to rcpt alone and pass the
		// privacy check; with compare, its content must be the one sent (after CRLF repair).
		rcpt    string
		compare []byte
	}{
		{name: "fail unknown sender", lines: []line{{cmd: "MAIL FROM:<mallory@example.test>", code: 550, enh: "5.7.1"}}},
		{name: "fail bad sender syntax", lines: []line{{cmd: "MAIL FROM:<alice@@example.test>", code: 501}}},
		{name: "fail bad recipient syntax", lines: []line{mail, {cmd: "RCPT TO:<bob@@example.test>", code: 501}}},
		{name: "fail recipient without domain", lines: []line{mail, {cmd: "RCPT TO:<bob@>", code: 501}}},
		{name: "fail recipient without angle brackets", lines: []line{mail, {cmd: "RCPT TO:bob example", code: 501}}},
		{name: "fail too many recipients", lines: []line{mail, rcpt(bob), rcpt(carol), rcpt(dave), {cmd: "RCPT TO:<" + erin + ">", code: 452, enh: "4.5.3"}}},
		{name: "fail declared size", lines: []line{{cmd: fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", alice, 1<<20), code: 552, enh: "5.3.4"}}},
		{name: "fail over size", lines: []line{mail, rcpt(bob), data,
			{data: "From: " + alice + "\r\nTo: " + bob + "\r\nSubject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 998)+"\r\n", 100) + ".\r\n", code: 552, enh: "5.3.4"}}},
		{name: "fail malformed header", rcpt: bob, lines: []line{mail, rcpt(bob), data,
			{data: "From: " + alice + "\r\nTo: " + bob + "\r\nThis line has no colon\r\nSubject: =?utf-8?q?broken\r\n\r\nbody\r\n.\r\n"}}},
		{name: "fail binary header", rcpt: bob, lines: []line{mail, rcpt(bob), data,
			{data: "From: " + alice + "\r\n\x00\x01: binary name\r\n\r\nbody\r\n.\r\n"}}},
		{name: "fail bare lf", rcpt: carol, compare: []byte(bareLF + "\r\n"), lines: []line{mail, rcpt(carol), data, {data: bareLF + "\r\n.\r\n"}}},
		{name: "fail empty message", rcpt: dave, lines: []line{mail, rcpt(dave), data, {data: ".\r\n"}}},
		{name: "fail header only", rcpt: erin, lines: []line{mail, rcpt(erin), data, {data: "From: " + alice + "\r\nTo: " + erin + "\r\nSubject: no body\r\n\r\n.\r\n"}}},
		{name: "fail data without recipients", lines: []line{mail, {cmd: "DATA", code: 500}}},
	}
	var accepted []Expect
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DialRaw(r.daemon.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			last := 0
			for i, l := range tt.lines {
				var code int
				var msg string
				if l.data != "" {
					code, msg, err = c.Send([]byte(l.data))
				} else {
					code, msg, err = c.Cmd(l.cmd)
				}
				if err != nil {
					t.Fatalf("step %d: no reply: %v (daemon running: %v)", i, err, r.daemon.Running())
				}
				if !replyOK(code, l.code) {
					t.Fatalf("step %d %q: reply %d %s, want %d %s", i, l.cmd, code, msg, l.code, l.enh)
				}
				if l.enh != "" && !strings.HasPrefix(msg, l.enh) {
					t.Fatalf("step %d %q: reply %d %s, want enhanced code %s", i, l.cmd, code, msg, l.enh)
				}
				t.Logf("%s -> %d %s", firstLines(l.cmd+l.data, 1), code, msg)
				last = code
			}
			if tt.rcpt != "" && last == 250 {
				// Headers to judge visibility by: the recipient was in To in each of these.
				accepted = append(accepted, Expect{From: alice, To: []string{tt.rcpt}, Rcpt: []string{tt.rcpt}, Message: tt.compare})
			}
			// The session must still work after the refusal, and so must the daemon.
			if code, msg, err := c.Cmd("RSET"); err != nil || code != 250 {
				t.Fatalf("RSET after bad input: %d %s %v", code, msg, err)
			}
			if !r.daemon.Running() {
				t.Fatalf("daemon exited: %v", r.daemon.ExitErr())
			}
		})
	}
	// What was accepted must be delivered, each to its own recipient, and a good message must still
	// go through afterwards.
	accepted = append(accepted, r.send(t, submission{msg: Message{From: alice, To: []string{heidi}, Subject: "after", Text: "still here\n"}}))
	txs, err := WaitPackages(r.sink, len(accepted), 60*time.Second, 500*time.Millisecond)
	if err != nil {
		t.Fatalf("%v (got %v)", err, rcptSets(txs))
	}
	for _, exp := range accepted {
		var mine []sink.Transaction
		for _, tx := range txs {
			if slices.Contains(normAll(tx.RcptTo), exp.Rcpt[0]) {
				mine = append(mine, tx)
			}
		}
		if _, err := r.checker.Check(context.Background(), exp, mine); err != nil {
			t.Errorf("message accepted for %s:\n%v", exp.Rcpt[0], err)
		}
	}
}

func replyOK(got, want int) bool {
	switch {
	case want == 0:
		return got >= 200 && got <= 599
	case want%100 == 0:
		return got/100 == want/100
	}
	return got == want
}

func TestRestartAfterKill(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	if err := r.sink.Down(); err != nil {
		t.Fatal(err)
	}
	msg := Message{From: alice, To: []string{bob}, Subject: "survives a crash", Text: "accepted, then killed\n"}
	exp := r.send(t, submission{msg: msg, rcpt: []string{bob, dave}})
	// Give the daemon time to seal and fail a delivery attempt against the dead next hop, so the
	// kill lands on a message that is spooled and in the retry cycle.
	time.Sleep(2 * time.Second)
	r.daemon.Kill()
	if n := len(r.sink.Transactions()); n != 0 {
		t.Fatalf("%d transactions delivered while the sink was down", n)
	}
	if err := r.sink.Up(); err != nil {
		t.Fatal(err)
	}
	if err := r.daemon.Start(); err != nil {
		t.Fatal(err)
	}
	if err := r.daemon.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	pkgs := r.expect(t, exp, 2)
	if k := kinds(pkgs); k[Encrypted] != 2 {
		t.Errorf("kinds %v", k)
	}
}

func TestStopOnSIGTERM(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	exp := r.send(t, submission{msg: Message{From: alice, To: []string{carol}, Subject: "before stop", Text: "x\n"}})
	r.expect(t, exp, 1)
	if !r.daemon.Stop() {
		t.Fatal("daemon did not exit within 10s of SIGTERM")
	}
	if err := r.daemon.ExitErr(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}
