package smtpfront

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const goodMsg = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"

type step struct {
	send string // one command line, or a DATA body ending in "\r\n."
	want string // prefix of "code enhanced" of the reply
}

// transaction is MAIL, RCPT and DATA with body, each expecting success up
// to the final reply, which must match final.
func transaction(from, rcpt, body, final string) []step {
	return []step{
		{"MAIL FROM:<" + from + ">", "250 2.0.0"},
		{"RCPT TO:<" + rcpt + ">", "250 2.0.0"},
		{"DATA", "354"},
		{body + ".", final},
	}
}

func TestReplies(t *testing.T) {
	t.Parallel()
	hugeHeader := "From: alice@example.test\r\nX-Pad: " + strings.Repeat("a", 900) + "\r\n"
	tests := []struct {
		name     string
		opts     Options
		policy   func(*testPolicy)
		spoolErr error
		steps    []step
		spooled  int      // messages expected in the spool afterwards
		hide     []string // must not appear in any reply
	}{
		{
			name:    "ok message queued",
			steps:   transaction("alice@example.test", "bob@example.test", goodMsg, "250 2.0.0"),
			spooled: 1,
		},
		{
			name:    "ok null sender",
			steps:   transaction("", "bob@example.test", goodMsg, "250 2.0.0"),
			spooled: 1,
		},
		{
			name:  "fail unknown sender",
			steps: []step{{"MAIL FROM:<mallory@example.test>", "550 5.7.1"}},
			hide:  []string{"/etc/appliance", "secret"},
		},
		{
			name: "fail recipient refused by policy text",
			policy: func(p *testPolicy) {
				p.rcptErr["carol@example.test"] = &PolicyError{Text: "no certificate for <carol@example.test>", Err: errors.New("slot 0 label hsm-secret")}
			},
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<bob@example.test>", "250 2.0.0"},
				{"RCPT TO:<carol@example.test>", "550 5.7.1"},
			},
			hide: []string{"bob@", "hsm-secret", "slot"},
		},
		{
			name: "fail recipient refused by sentinel",
			policy: func(p *testPolicy) {
				p.rcptErr["carol@example.test"] = fmt.Errorf("failed to find cert in %q: %w", "/srv/certs", ErrRecipientRefused)
			},
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<carol@EXAMPLE.test>", "550 5.7.1"},
			},
			hide: []string{"/srv/certs"},
		},
		{
			name: "fail too many recipients",
			opts: Options{MaxRecipients: 2},
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<a@example.test>", "250 2.0.0"},
				{"RCPT TO:<b@example.test>", "250 2.0.0"},
				{"RCPT TO:<c@example.test>", "452 4.5.3"},
			},
		},
		{
			// go-smtp counts every RCPT toward its limit; the envelope
			// keeps one copy (TestPipelining checks the envelope).
			name: "ok duplicate recipient accepted again",
			opts: Options{MaxRecipients: 3},
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<a@example.test>", "250 2.0.0"},
				{"RCPT TO:<a@EXAMPLE.TEST>", "250 2.0.0"},
				{"RCPT TO:<b@example.test>", "250 2.0.0"},
			},
		},
		{
			name:  "fail declared size over limit",
			opts:  Options{MaxMessageBytes: 100},
			steps: []step{{"MAIL FROM:<alice@example.test> SIZE=101", "552 5.3.4"}},
		},
		{
			name:  "ok declared size at limit",
			opts:  Options{MaxMessageBytes: 100},
			steps: []step{{"MAIL FROM:<alice@example.test> SIZE=100", "250 2.0.0"}},
		},
		{
			name:  "fail body over limit not spooled",
			opts:  Options{MaxMessageBytes: 100},
			steps: transaction("alice@example.test", "bob@example.test", goodMsg+strings.Repeat("x", 100)+"\r\n", "552 5.3.4"),
		},
		{
			name:     "fail spool full",
			spoolErr: fmt.Errorf("failed to write %q: %w", "/var/spool/appliance/x", ErrSpoolFull),
			steps:    transaction("alice@example.test", "bob@example.test", goodMsg, "452 4.3.1"),
			hide:     []string{"/var/spool"},
		},
		{
			name:     "fail spool disk full errno",
			spoolErr: &net.OpError{Op: "write", Err: syscall.ENOSPC},
			steps:    transaction("alice@example.test", "bob@example.test", goodMsg, "452 4.3.1"),
		},
		{
			name:     "fail spool temporary",
			spoolErr: fmt.Errorf("failed to reach token %q: %w", "appliance-token", ErrTemporary),
			steps:    transaction("alice@example.test", "bob@example.test", goodMsg, "451 4.3.0"),
			hide:     []string{"appliance-token"},
		},
		{
			name:     "fail spool unknown error has no details",
			spoolErr: fmt.Errorf("failed to open %q: permission denied", "/var/spool/appliance/secret"),
			steps:    transaction("alice@example.test", "bob@example.test", goodMsg, "554 5.0.0"),
			hide:     []string{"/var/spool", "permission"},
		},
		{
			name:   "fail policy temporary",
			policy: func(p *testPolicy) { p.senderErr = &PolicyError{Text: "directory unavailable", Temporary: true} },
			steps:  []step{{"MAIL FROM:<alice@example.test>", "451 4.3.0"}},
		},
		{
			name: "fail bad recipient syntax",
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<a@b@example.test>", "501 5.1.3"},
				{"RCPT TO:<a..b@example.test>", "501 5.1.3"},
				{"RCPT TO:<bob@exa_mple.test>", "501 5.1.3"},
				{"RCPT TO:<bob@-example.test>", "501 5.1.3"},
				{"RCPT TO:<bob@[300.1.1.1]>", "501 5.1.3"},
			},
		},
		{
			name: "ok address literal recipient",
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<bob@[192.0.2.1]>", "250 2.0.0"},
				{"RCPT TO:<bob@[IPv6:2001:db8::1]>", "250 2.0.0"},
			},
		},
		{
			name:  "fail bad sender syntax",
			steps: []step{{"MAIL FROM:<alice@exa mple.test>", "501 5.5.2"}, {"MAIL FROM:<al..ice@example.test>", "501 5.1.7"}},
		},
		{
			name: "fail unparseable path is go-smtp's syntax error",
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<bob>", "501 5.5.2"},
			},
		},
		{
			name:  "fail malformed header",
			steps: transaction("alice@example.test", "bob@example.test", "From: alice@example.test\r\nno colon here\r\n\r\nbody\r\n", "550 5.6.0"),
		},
		{
			name:  "fail header starts with whitespace",
			steps: transaction("alice@example.test", "bob@example.test", " From: alice@example.test\r\n\r\nbody\r\n", "550 5.6.0"),
		},
		{
			name:  "fail empty body",
			steps: transaction("alice@example.test", "bob@example.test", "", "550 5.6.0"),
		},
		{
			name:  "fail body without header",
			steps: transaction("alice@example.test", "bob@example.test", "\r\njust a body\r\n", "550 5.6.0"),
		},
		{
			name:  "fail no from header",
			steps: transaction("alice@example.test", "bob@example.test", "To: bob@example.test\r\n\r\nbody\r\n", "550 5.6.0"),
		},
		{
			name:  "fail header from not authorized",
			steps: transaction("alice@example.test", "bob@example.test", "From: mallory@example.test\r\n\r\nbody\r\n", "550 5.7.1"),
		},
		{
			name:  "fail header sender not authorized",
			steps: transaction("alice@example.test", "bob@example.test", "From: alice@example.test\r\nSender: mallory@example.test\r\n\r\nbody\r\n", "550 5.7.1"),
		},
		{
			name:  "fail NUL in header",
			steps: transaction("alice@example.test", "bob@example.test", "From: alice@example.test\r\nSubject: a\x00b\r\n\r\nbody\r\n", "550 5.6.0"),
		},
		{
			name:  "fail header over limit",
			opts:  Options{MaxHeaderBytes: 512},
			steps: transaction("alice@example.test", "bob@example.test", hugeHeader+"\r\nbody\r\n", "552 5.3.4"),
		},
		{
			name:    "ok header without body",
			steps:   transaction("alice@example.test", "bob@example.test", "From: alice@example.test\r\n", "250 2.0.0"),
			spooled: 1,
		},
		{
			name:  "fail auth required",
			opts:  Options{RequireAuth: true},
			steps: []step{{"MAIL FROM:<alice@example.test>", "530 5.7.0"}},
		},
		{
			name: "ok rset clears transaction",
			steps: []step{
				{"MAIL FROM:<alice@example.test>", "250 2.0.0"},
				{"RCPT TO:<bob@example.test>", "250 2.0.0"},
				{"RSET", "250 2.0.0"},
				{"DATA", "502 5.5.1"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			policy := newTestPolicy()
			if tt.policy != nil {
				tt.policy(policy)
			}
			spool := newFileSpool(t)
			spool.err = tt.spoolErr
			ts := startServer(t, tt.opts, spool, policy)
			rc := dialRaw(t, ts.addr)
			if got := rc.cmd("EHLO client.example.test"); code(got) != "250 Hello" && !strings.HasPrefix(got, "250 ") {
				t.Fatalf("EHLO = %q", got)
			}
			for _, s := range tt.steps {
				got := rc.cmd(s.send)
				if !strings.HasPrefix(code(got), s.want) {
					t.Fatalf("after %.40q: reply %q, want %q", s.send, got, s.want)
				}
				for _, h := range tt.hide {
					if got[0] == '2' || got[0] == '3' {
						break // go-smtp's positive replies echo the address
					}
					if strings.Contains(got, h) {
						t.Errorf("reply %q reveals %q", got, h)
					}
				}
			}
			if got := len(spool.messages(t)); got != tt.spooled {
				t.Errorf("spooled %d messages, want %d", got, tt.spooled)
			}
			// The connection must still serve after a refusal.
			if got := rc.cmd("NOOP"); code(got) != "250 2.0.0" {
				t.Errorf("NOOP after steps = %q", got)
			}
		})
	}
}

func TestQueuedReplyCarriesID(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{}, spool, newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	var last string
	for _, s := range transaction("alice@example.test", "Bob@Example.TEST", goodMsg, "250 2.0.0") {
		last = rc.cmd(s.send)
	}
	if last != "250 2.0.0 OK queued as m0001" {
		t.Fatalf("reply = %q", last)
	}
	env := spool.envelope("m0001")
	if env.MailFrom != "alice@example.test" || len(env.RcptTo) != 1 || env.RcptTo[0] != "Bob@example.test" {
		t.Errorf("envelope = %+v", env)
	}
	if env.Helo != "client.example.test" || env.ClientAddr == "" || env.ReceivedAt.IsZero() {
		t.Errorf("envelope = %+v", env)
	}
	log := ts.logText()
	for _, want := range []string{"message received", "id=m0001", "rcpts=1", fmt.Sprintf("size=%d", len(goodMsg))} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "hello") || strings.Contains(log, "Subject") {
		t.Errorf("log shows message content:\n%s", log)
	}
}

func TestEHLOAdvertises(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{MaxMessageBytes: 1000}, newFileSpool(t), newTestPolicy())
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not advertised", ext)
		}
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS advertised without TLSConfig")
	}
	if ok, _ := c.Extension("AUTH"); ok {
		t.Error("AUTH advertised without Authenticator")
	}
}

func TestPipelining(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{}, spool, newTestPolicy())
	rc := dialRaw(t, ts.addr)
	// RFC 2920: the whole batch in one write, replies read afterwards.
	rc.send("EHLO client.example.test\r\n" +
		"MAIL FROM:<alice@example.test>\r\n" +
		"RCPT TO:<bob@example.test>\r\n" +
		"RCPT TO:<bad@@example.test>\r\n" +
		"RCPT TO:<carol@example.test>\r\n" +
		"RCPT TO:<BOB@example.test>\r\n" +
		"RCPT TO:<bob@EXAMPLE.test>\r\n" +
		"DATA\r\n")
	want := []string{"250", "250 2.0.0", "250 2.0.0", "501 5.1.3", "250 2.0.0", "250 2.0.0", "250 2.0.0", "354"}
	for i, w := range want {
		if got := rc.reply(); !strings.HasPrefix(code(got), w) {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
	rc.send(goodMsg + ".\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<dave@example.test>\r\nDATA\r\n" + goodMsg + ".\r\nQUIT\r\n")
	for i, w := range []string{"250 2.0.0", "250 2.0.0", "250 2.0.0", "354", "250 2.0.0", "221 2.0.0"} {
		if got := rc.reply(); !strings.HasPrefix(code(got), w) {
			t.Fatalf("second batch reply %d = %q, want %q", i, got, w)
		}
	}
	if got := len(spool.messages(t)); got != 2 {
		t.Fatalf("spooled %d, want 2", got)
	}
	// Local parts are case-sensitive, domains are not.
	if env := spool.envelope("m0001"); strings.Join(env.RcptTo, " ") != "bob@example.test carol@example.test BOB@example.test" {
		t.Errorf("first envelope recipients = %q", env.RcptTo)
	}
}

func TestLineEndings(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string // sent between DATA and the end marker
		want string // spooled bytes
	}{
		{"ok crlf unchanged", goodMsg, goodMsg},
		{
			"ok bare lf normalised",
			"From: alice@example.test\nSubject: lf\n\nline one\nline two\r\n",
			"From: alice@example.test\r\nSubject: lf\r\n\r\nline one\r\nline two\r\n",
		},
		{
			"ok bare cr normalised",
			"From: alice@example.test\r\n\r\na\rb\r\n",
			"From: alice@example.test\r\n\r\na\r\nb\r\n",
		},
		{
			// A smuggling attempt: "\n.\n" and "\n.\r\n" are no end of
			// DATA; they stay inside this message, as CRLF.CRLF, which
			// the next hop's client dot-stuffs.
			"ok lf dot lf stays inside the message",
			"From: alice@example.test\r\n\r\nbefore\n.\nMAIL FROM:<x@example.test>\n.\r\nafter\r\n",
			"From: alice@example.test\r\n\r\nbefore\r\n.\r\nMAIL FROM:<x@example.test>\r\n.\r\nafter\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			ts := startServer(t, Options{}, spool, newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			for _, s := range transaction("alice@example.test", "bob@example.test", tt.body, "250 2.0.0") {
				if got := rc.cmd(s.send); !strings.HasPrefix(code(got), s.want) {
					t.Fatalf("reply %q, want %q", got, s.want)
				}
			}
			if got := string(spool.messages(t)["m0001"]); got != tt.want {
				t.Errorf("spooled %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEightBitPreserved(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{}, spool, newTestPolicy())
	var body bytes.Buffer
	body.WriteString("From: Älice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: Grüße, 日本語\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	for i := 0; i < 200; i++ {
		// Every non-CR/LF byte value, including high bytes and a leading
		// dot that the client must stuff and the server unstuff.
		for b := 0; b < 256; b++ {
			if b != '\r' && b != '\n' {
				body.WriteByte(byte(b))
			}
		}
		body.WriteString("\r\n.leading dot\r\n")
	}
	want := body.Bytes()
	c, err := smtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("alice@example.test", &smtp.MailOptions{Body: smtp.Body8BitMIME}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("bob@example.test", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(want); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := spool.messages(t)["m0001"]; !bytes.Equal(got, want) {
		t.Errorf("spooled %d bytes differ from the %d sent", len(got), len(want))
	}
}

// TestSizeBoundary sends messages of exactly the limit and one byte more,
// through DATA and through BDAT (CHUNKING, which go-smtp always offers).
func TestSizeBoundary(t *testing.T) {
	t.Parallel()
	const limit = 4096
	msgOf := func(n int) string {
		head := "From: alice@example.test\r\n\r\n"
		line := strings.Repeat("z", 70) + "\r\n"
		body := strings.Repeat(line, (n-len(head))/len(line))
		pad := n - len(head) - len(body) - 2
		return head + body + strings.Repeat("y", pad) + "\r\n"
	}
	tests := []struct {
		name string
		size int
		bdat bool
		want string
	}{
		{"ok data exactly at limit", limit, false, "250 2.0.0"},
		{"fail data one byte over", limit + 1, false, "552 5.3.4"},
		{"ok bdat exactly at limit", limit, true, "250 2.0.0"},
		{"fail bdat one byte over", limit + 1, true, "552 5.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			ts := startServer(t, Options{MaxMessageBytes: limit}, spool, newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			rc.cmd("MAIL FROM:<alice@example.test>")
			rc.cmd("RCPT TO:<bob@example.test>")
			msg := msgOf(tt.size)
			if len(msg) != tt.size {
				t.Fatalf("test message is %d bytes", len(msg))
			}
			var got string
			if tt.bdat {
				half := len(msg) / 2
				// A chunk is raw bytes right after the command line.
				rc.send(fmt.Sprintf("BDAT %d\r\n%s", half, msg[:half]))
				if r := rc.reply(); !strings.HasPrefix(r, "250") {
					t.Fatalf("first chunk: %q", r)
				}
				rc.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg)-half, msg[half:]))
				got = rc.reply()
			} else {
				rc.cmd("DATA")
				got = rc.cmd(msg + ".")
			}
			if !strings.HasPrefix(code(got), tt.want) {
				t.Fatalf("reply %q, want %q", got, tt.want)
			}
			spooled := spool.messages(t)
			if tt.want == "250 2.0.0" {
				if string(spooled["m0001"]) != msg {
					t.Errorf("spooled %d bytes, want the %d sent", len(spooled["m0001"]), len(msg))
				}
			} else if len(spooled) != 0 {
				t.Errorf("over-limit message spooled: %d files", len(spooled))
			}
			if r := rc.cmd("NOOP"); code(r) != "250 2.0.0" {
				t.Errorf("NOOP after = %q", r)
			}
		})
	}
}

type passwords map[string]string

func (p passwords) Authenticate(_ context.Context, user, pass string) error {
	if want, ok := p[user]; ok && want == pass {
		return nil
	}
	return errors.New("wrong password")
}

func (p passwords) KnownUser(user string) bool {
	_, ok := p[user]
	return ok
}

type userPolicy struct{ *testPolicy }

// CheckSender lets "alice" use only alice@example.test.
func (p userPolicy) CheckSender(_ context.Context, from, user string) error {
	if user == "alice" && from == "alice@example.test" {
		return nil
	}
	return ErrSenderRefused
}

func TestAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		user     string
		pass     string
		from     string
		wantAuth string
		wantMail string
	}{
		{"ok right password own address", "alice", "secret", "alice@example.test", "", ""},
		{"fail wrong password", "alice", "guess", "alice@example.test", "535 5.7.8", "530 5.7.0"},
		{"fail someone else's address", "alice", "secret", "bob@example.test", "", "550 5.7.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			opts := Options{Auth: passwords{"alice": "secret"}, AllowInsecureAuth: true, RequireAuth: true}
			ts := startServer(t, opts, spool, userPolicy{newTestPolicy()})
			c, err := smtp.Dial(ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.example.test"); err != nil {
				t.Fatal(err)
			}
			if !c.SupportsAuth(sasl.Plain) {
				t.Fatal("AUTH PLAIN not offered")
			}
			err = c.Auth(sasl.NewPlainClient("", tt.user, tt.pass))
			checkSMTPErr(t, "AUTH", err, tt.wantAuth)
			err = c.Mail(tt.from, nil)
			checkSMTPErr(t, "MAIL", err, tt.wantMail)
			if tt.wantMail != "" {
				return
			}
			if err := c.Rcpt("bob@example.test", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, "From: alice@example.test\r\n\r\nhi\r\n")
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if env := spool.envelope("m0001"); env.AuthUser != tt.user {
				t.Errorf("envelope AuthUser = %q, want %q", env.AuthUser, tt.user)
			}
		})
	}
}

func checkSMTPErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return
	}
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Fatalf("%s: err = %v, want %s", what, err, want)
	}
	got := fmt.Sprintf("%d %d.%d.%d", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	if got != want {
		t.Fatalf("%s: reply %s (%s), want %s", what, got, se.Message, want)
	}
}

func TestAuthNeedsTLS(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{Auth: passwords{"alice": "secret"}}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	if got := rc.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA=="); code(got) != "523 5.7.10" {
		t.Errorf("AUTH without TLS = %q", got)
	}
}

func TestTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data bool // go idle inside DATA instead of between commands
	}{
		{"fail idle between commands", false},
		{"fail idle inside data", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			ts := startServer(t, Options{ReadTimeout: 300 * time.Millisecond}, spool, newTestPolicy())
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			if tt.data {
				rc.cmd("MAIL FROM:<alice@example.test>")
				rc.cmd("RCPT TO:<bob@example.test>")
				rc.cmd("DATA")
				rc.send("From: alice@example.test\r\n\r\npartial")
			}
			// The server must give up on its own and close.
			_ = rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
			rest, err := io.ReadAll(rc.r)
			if err != nil {
				t.Fatalf("connection not closed by the server: %v", err)
			}
			// Inside DATA the 421 must come first: a reply that kept the
			// connection open would read the rest of the body as commands.
			if !strings.HasPrefix(string(rest), "421 4.4.2") {
				t.Errorf("server said %q, want a 421 4.4.2 and close", rest)
			}
			if n := len(spool.messages(t)); n != 0 {
				t.Errorf("partial message spooled: %d", n)
			}
		})
	}
}

func TestDataTimeoutCapsSlowClient(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{ReadTimeout: time.Second, DataTimeout: 400 * time.Millisecond}, spool, newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	rc.cmd("MAIL FROM:<alice@example.test>")
	rc.cmd("RCPT TO:<bob@example.test>")
	rc.cmd("DATA")
	rc.send("From: alice@example.test\r\n\r\n")
	// Drip a byte every 100ms: never idle for ReadTimeout, but the DATA
	// phase as a whole must end.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 40; i++ {
			if _, err := rc.c.Write([]byte("x")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_ = rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := rc.r.ReadString('\n')
	if err != nil {
		t.Fatalf("no reply before the cap: %v", err)
	}
	if !strings.HasPrefix(line, "421 4.4.2") {
		t.Errorf("reply %q, want the DATA phase ended", line)
	}
	rc.c.Close()
	<-done
	if n := len(spool.messages(t)); n != 0 {
		t.Errorf("partial message spooled: %d", n)
	}
}

func TestMaxConnsPerIP(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{MaxConnsPerIP: 2}, newFileSpool(t), newTestPolicy())
	a := dialRaw(t, ts.addr)
	dialRaw(t, ts.addr)
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(got), "421 4.7.0") {
		t.Fatalf("third connection got %q", got)
	}
	// A slot frees when a connection ends.
	a.cmd("QUIT")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if strings.HasPrefix(line, "220 ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot not freed after QUIT: %q", line)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShutdownClosesIdleConnections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, Options{}, newFileSpool(t), newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded with an idle client", err)
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(rc.r); err != nil {
		t.Errorf("idle connection not closed: %v", err)
	}
	if _, err := net.DialTimeout("tcp", ts.addr, time.Second); err == nil {
		t.Error("listener still accepts after Shutdown")
	}
}

// TestOversizeDrainedUnderDataBudget: after the limit is hit, go-smtp
// discards the rest of the body; that must not time out after one idle
// interval, or the rest of the body would be read as commands.
func TestOversizeDrainedUnderDataBudget(t *testing.T) {
	t.Parallel()
	spool := newFileSpool(t)
	ts := startServer(t, Options{MaxMessageBytes: 1024, ReadTimeout: 1500 * time.Millisecond}, spool, newTestPolicy())
	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client.example.test")
	rc.cmd("MAIL FROM:<alice@example.test>")
	rc.cmd("RCPT TO:<bob@example.test>")
	rc.cmd("DATA")
	rc.send("From: alice@example.test\r\n\r\n" + strings.Repeat("x", 70) + "\r\n")
	rc.send(strings.Repeat(strings.Repeat("y", 70)+"\r\n", 20)) // over the limit now
	for i := 0; i < 5; i++ {
		// Under ReadTimeout each by over a second (a stall of a busy -race run fits in it),
		// over it in sum.
		time.Sleep(400 * time.Millisecond)
		rc.send("QUIT\r\n") // a body line that would end the session if read as a command
	}
	if got := rc.cmd("."); code(got) != "552 5.3.4" {
		t.Fatalf("reply %q, want 552 5.3.4", got)
	}
	if got := rc.cmd("NOOP"); code(got) != "250 2.0.0" {
		t.Fatalf("NOOP after the refused body = %q: body lines were read as commands", got)
	}
	if n := len(spool.messages(t)); n != 0 {
		t.Errorf("spooled %d", n)
	}
}
