package queue

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"
)

// dsn is an RFC 3464 delivery status notification for the failed
// recipients of one message. It goes to the envelope sender, who knows every
// recipient; still it names only those it reports on, so one DSN per
// failure event never mentions other packages' recipients.
type dsn struct {
	hostname string
	id       string
	seq      int
	sender   string
	arrival  time.Time
	now      time.Time
	rcpts    []*rcptRecord
}

// WriteTo writes the whole message with CRLF line ends.
func (d *dsn) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	var rb [12]byte
	rand.Read(rb[:])
	boundary := "=_dsn_" + hex.EncodeToString(rb[:])
	host := headerSafe(d.hostname)
	line := func(format string, a ...any) {
		fmt.Fprintf(bw, format, a...)
		bw.WriteString("\r\n")
	}

	line("From: Mail Delivery System <MAILER-DAEMON@%s>", host)
	line("To: <%s>", headerSafe(d.sender))
	line("Subject: Undelivered Mail Returned to Sender")
	line("Date: %s", d.now.Format(time.RFC1123Z))
	line("Message-ID: <%s.%d.dsn@%s>", d.id, d.seq, host)
	line("Auto-Submitted: auto-replied")
	line("MIME-Version: 1.0")
	line("Content-Type: multipart/report; report-type=delivery-status;")
	line("\tboundary=\"%s\"", boundary)
	line("")
	line("This is a MIME-encapsulated message.")
	line("")

	line("--%s", boundary)
	line("Content-Type: text/plain; charset=us-ascii")
	line("Content-Description: Notification")
	line("")
	line("This is the mail system at host %s.", host)
	line("")
	line("Your message could not be delivered to the following recipients.")
	line("")
	for _, r := range d.rcpts {
		// Each part is cut to 900 octets; together they are cut again to one line of at
		// most 998 (RFC 5322 section 2.1.1).
		addr, diag := headerSafe(r.Addr), headerSafe(r.Diag)
		if room := 998 - len("<>: ") - len(addr); len(diag) > room {
			diag = diag[:room]
		}
		line("<%s>: %s", addr, diag)
	}
	line("")

	line("--%s", boundary)
	line("Content-Type: message/delivery-status")
	line("Content-Description: Delivery report")
	line("")
	line("Reporting-MTA: dns; %s", host)
	line("X-Appliance-Queue-ID: %s", d.id)
	line("Arrival-Date: %s", d.arrival.Format(time.RFC1123Z))
	for _, r := range d.rcpts {
		line("")
		line("Final-Recipient: rfc822; %s", headerSafe(r.Addr))
		line("Action: failed")
		line("Status: %s", headerSafe(r.Status))
		if r.Diag != "" {
			line("Diagnostic-Code: %s", headerSafe(r.Diag))
		}
		line("Last-Attempt-Date: %s", d.now.Format(time.RFC1123Z))
	}
	line("")
	line("--%s--", boundary)
	if err := bw.Flush(); err != nil {
		return cw.n, fmt.Errorf("failed to write dsn: %w", err)
	}
	return cw.n, nil
}

// headerSafe keeps remote reply text (it comes from another server) from
// breaking the DSN's structure: one line of printable ASCII.
func headerSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20 || r > 0x7e:
			b.WriteByte('?')
		default:
			b.WriteRune(r)
		}
	}
	out := b.String()
	if len(out) > 900 {
		out = out[:900]
	}
	return out
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
