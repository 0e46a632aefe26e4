package split

import (
	"strings"
	"time"
)

// Trace is what the Received field the appliance adds to a package says (RFC 5321 section 4.4).
type Trace struct {
	Helo, ClientAddr string // the submitting client, as it said and as seen
	By, ID           string // this relay's host name and the message's spool id
	// For names the package's one recipient when the plan allows it (Package.ReceivedFor), so
	// the field cannot reveal a hidden recipient; "" for none.
	For string
	At  time.Time
}

// Field is the Received field, folded, with CRLF at the end. Every part is reduced to
// printable ASCII without '(', ')' or ';', so no client-supplied text can open a comment or a
// clause.
func (t Trace) Field() string {
	var b strings.Builder
	b.WriteString("Received: from ")
	helo := t.Helo
	if helo == "" {
		helo = "unknown"
	}
	b.WriteString(traceText(helo))
	if t.ClientAddr != "" {
		b.WriteString(" (" + traceText(t.ClientAddr) + ")")
	}
	b.WriteString("\r\n\tby " + traceText(t.By) + " (appliance) with ESMTP id " + traceText(t.ID))
	if t.For != "" {
		b.WriteString("\r\n\tfor <" + traceText(t.For) + ">")
	}
	b.WriteString(";\r\n\t" + t.At.Format(time.RFC1123Z) + "\r\n")
	return b.String()
}

// ListID is the List-Id field value of a list (RFC 2919) from its normalized address.
func ListID(addr string) string {
	local, domain, _ := strings.Cut(addr, "@")
	return "<" + traceText(local) + "." + traceText(domain) + ">"
}

func traceText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x21 || r > 0x7e || r == '(' || r == ')' || r == ';' {
			return '_'
		}
		return r
	}, s)
}
