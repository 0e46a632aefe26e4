package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"appliance/internal/sink"
)

// Message is a test message to submit.
type Message struct {
	From        string
	To, Cc, Bcc []string // Bcc is written as a header only when set; clients usually strip it
	Subject     string   // non-ASCII is written as an RFC 2047 encoded-word
	Text        string   // the text part; non-ASCII makes it 8bit
	Attachment  []byte   // when set, the message is multipart/mixed with this as a base64 part
}

// Bytes renders the message with CRLF line ends.
func (m Message) Bytes() []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("From", m.From)
	if len(m.To) > 0 {
		h("To", strings.Join(m.To, ", "))
	} else {
		h("To", "undisclosed-recipients:;")
	}
	if len(m.Cc) > 0 {
		h("Cc", strings.Join(m.Cc, ", "))
	}
	if len(m.Bcc) > 0 {
		h("Bcc", strings.Join(m.Bcc, ", "))
	}
	h("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	h("Date", time.Now().UTC().Format(time.RFC1123Z))
	h("Message-ID", "<"+randomID()+"@client.example.test>")
	h("MIME-Version", "1.0")
	text := strings.ReplaceAll(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n", "\r\n")
	cte := "7bit"
	for _, c := range []byte(text) {
		if c >= 0x80 {
			cte = "8bit"
			break
		}
	}
	if m.Attachment == nil {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", cte)
		b.WriteString("\r\n" + text)
		return b.Bytes()
	}
	boundary := "b-" + randomID()
	h("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	b.WriteString("\r\nThis is a multipart message.\r\n")
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: %s\r\n\r\n%s\r\n", boundary, cte, text)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\n\r\n", boundary)
	enc := base64.StdEncoding.EncodeToString(m.Attachment)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes()
}

func randomID() string {
	var b [9]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Result is how the appliance answered one submission.
type Result struct {
	Mail error
	Rcpt map[string]error // per recipient; nil means 250
	Data error            // nil means 250 (the message is spooled)
}

// Accepted are the recipients the appliance took.
func (r Result) Accepted(rcpt []string) []string {
	var out []string
	for _, a := range rcpt {
		if err, ok := r.Rcpt[a]; ok && err == nil {
			out = append(out, a)
		}
	}
	return out
}

// SubmitGo submits msg with go-smtp's client, carrying on past refused recipients as a client
// would, and returns every reply; err is only for trouble talking at all.
func SubmitGo(addr, from string, rcpt []string, msg []byte) (Result, error) {
	res := Result{Rcpt: map[string]error{}}
	c, err := smtp.Dial(addr)
	if err != nil {
		return res, fmt.Errorf("failed to dial %q: %w", addr, err)
	}
	defer c.Close()
	if err := c.Hello("client.example.test"); err != nil {
		return res, fmt.Errorf("failed to greet: %w", err)
	}
	opts := &smtp.MailOptions{Size: int64(len(msg))}
	if ok, _ := c.Extension("8BITMIME"); ok {
		opts.Body = smtp.Body8BitMIME
	}
	if res.Mail = c.Mail(from, opts); res.Mail != nil {
		return res, nil
	}
	ok := 0
	for _, r := range rcpt {
		res.Rcpt[r] = c.Rcpt(r, nil)
		if res.Rcpt[r] == nil {
			ok++
		}
	}
	if ok == 0 {
		return res, nil
	}
	w, err := c.Data()
	if err != nil {
		res.Data = err
		return res, nil
	}
	if _, err := w.Write(msg); err != nil {
		return res, fmt.Errorf("failed to send data: %w", err)
	}
	res.Data = w.Close()
	if res.Data == nil {
		c.Quit()
	}
	return res, nil
}

// SubmitSwaks submits the message in file with swaks, the way an operator would test a relay. swaks
// ends the data with CRLF itself, so file should not end with one.
func SubmitSwaks(ctx context.Context, addr, from string, rcpt []string, file string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("failed to split address %q: %w", addr, err)
	}
	cmd := exec.CommandContext(ctx, "swaks", "--server", host, "--port", port, "--from", from,
		"--to", strings.Join(rcpt, ","), "--data", "@"+file, "--helo", "client.example.test")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("failed to submit with swaks: %w\n%s", err, tail(string(out), 15))
	}
	return string(out), nil
}

// WriteForSwaks writes msg to path without its final CRLF and returns the bytes swaks will send.
func WriteForSwaks(path string, msg []byte) ([]byte, error) {
	body := bytes.TrimSuffix(msg, []byte("\r\n"))
	if err := os.WriteFile(path, body, 0o600); err != nil {
		return nil, fmt.Errorf("failed to write message: %w", err)
	}
	return append(bytes.Clone(body), '\r', '\n'), nil
}

// WaitPackages waits up to timeout for n transactions at s, then a moment longer to catch any
// extra one (a privacy bug can show up as one package too many), and returns them all.
func WaitPackages(s *sink.Sink, n int, timeout, settle time.Duration) ([]sink.Transaction, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	txs, err := s.Wait(ctx, n)
	if err != nil {
		return txs, err
	}
	time.Sleep(settle)
	txs = s.Transactions()
	if len(txs) != n {
		return txs, fmt.Errorf("%w: %d transactions arrived, want %d", ErrViolation, len(txs), n)
	}
	return txs, nil
}

// Raw is a hand-driven SMTP connection for input no well-behaved client would send.
type Raw struct {
	conn net.Conn
	text *textproto.Conn
}

// DialRaw connects, reads the greeting and sends EHLO.
func DialRaw(addr string) (*Raw, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("failed to dial %q: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	r := &Raw{conn: c, text: textproto.NewConn(c)}
	if code, msg, err := r.text.ReadResponse(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("failed to read greeting: %d %s: %w", code, msg, err)
	}
	if code, msg, err := r.Cmd("EHLO client.example.test"); err != nil || code != 250 {
		c.Close()
		return nil, fmt.Errorf("failed to greet: %d %s: %v", code, msg, err)
	}
	return r, nil
}

// Cmd sends one command line and reads the reply.
func (r *Raw) Cmd(line string) (int, string, error) {
	if err := r.text.PrintfLine("%s", line); err != nil {
		return 0, "", err
	}
	return r.reply()
}

// Send writes b exactly as given (no dot-stuffing, no line end conversion) and reads the reply.
func (r *Raw) Send(b []byte) (int, string, error) {
	if _, err := r.conn.Write(b); err != nil {
		return 0, "", err
	}
	return r.reply()
}

func (r *Raw) reply() (int, string, error) {
	code, msg, err := r.text.ReadResponse(0)
	var pe textproto.ProtocolError
	if errors.As(err, &pe) {
		return code, msg, err
	}
	// ReadResponse(0) reports every code as an *Error; the code and text are what callers want.
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code, te.Msg, nil
	}
	return code, msg, err
}

// Close quits politely and closes.
func (r *Raw) Close() error {
	r.text.PrintfLine("QUIT")
	return r.conn.Close()
}
