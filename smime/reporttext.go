package smime

// The leak audit as `appliance inspect` prints it: the report in text lines and, for a
// client-encrypted message, how the appliance would split it.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// SplitPlan is what splitting a client-encrypted message without decrypting it would do.
type SplitPlan struct {
	Error    string           `json:"error,omitempty"`
	Packages []PlannedPackage `json:"packages,omitempty"`
	Dropped  []DroppedInfo    `json:"dropped,omitempty"`
	Refused  []RefusedRcpt    `json:"refused,omitempty"`
}

// PlannedPackage is one package of a split: its recipients, whether they are hidden ones, the
// RecipientInfos it carries (numbered from 1, as the report's) and their distinct owners.
type PlannedPackage struct {
	Recipients     []string
	Hidden         bool
	RecipientInfos []int
	Owners         []string
}

// DroppedInfo is a RecipientInfo no package carries, and why.
type DroppedInfo struct {
	Index int    `json:"index"`
	Why   string `json:"why"`
}

// RefusedRcpt is a recipient who would get no package.
type RefusedRcpt struct {
	Recipient string `json:"recipient"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
}

// HeaderEnvelope is the envelope a message's header implies: the first From address, and the
// To, Cc and Bcc addresses.
func HeaderEnvelope(msg []byte) (from string, rcpts []string, err error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(msg)))
	if err != nil {
		return "", nil, fmt.Errorf("failed to read header: %w", err)
	}
	mh := mail.Header{Header: message.Header{Header: h}}
	if list, err := mh.AddressList("From"); err == nil && len(list) > 0 {
		from = list[0].Address
	}
	for _, f := range []string{"To", "Cc", "Bcc"} {
		list, _ := mh.AddressList(f)
		for _, a := range list {
			rcpts = append(rcpts, a.Address)
		}
	}
	return from, rcpts, nil
}

// WriteText writes r in lines of text, and sp (nil: none) after it.
func (r *Report) WriteText(w io.Writer, sp *SplitPlan) {
	fmt.Fprintf(w, "%s: %s\n", r.File, r.Kind)
	if r.Refused != "" {
		fmt.Fprintf(w, "  refused: %s\n", r.Refused)
	}
	for _, f := range r.Headers {
		fmt.Fprintf(w, "  header %-12s %s\n", f.Field+":", f.Value)
	}
	n := 0
	for _, l := range r.Layers {
		path := l.Path
		if path == "" {
			path = "message"
		}
		fmt.Fprintf(w, "  layer %s: %s", path, l.Type)
		if l.MediaType != "" {
			fmt.Fprintf(w, " (labelled %s", l.MediaType)
			if l.Label != "" {
				fmt.Fprintf(w, "; smime-type=%s", l.Label)
			}
			fmt.Fprint(w, ")")
		}
		fmt.Fprintln(w)
		if l.Error != "" {
			fmt.Fprintf(w, "    cannot read: %s\n", l.Error)
		}
		if len(l.Fields) > 0 {
			fmt.Fprintf(w, "    carries %s\n", strings.Join(l.Fields, ", "))
		}
		for _, ri := range l.RIs {
			n++
			id := ri.SubjectKeyID
			if id == "" {
				id = ri.Issuer + " serial " + ri.Serial
			} else {
				id = "ski " + id
			}
			owner := ri.Owner
			if owner == "" {
				owner = "(unknown to the directory)"
			}
			fmt.Fprintf(w, "  recipientinfo #%d %s -> %s [%s; %s]\n", n, ri.Kind, owner, id, ri.KeyEncAlg)
		}
	}
	fmt.Fprintf(w, "  reveals: %s\n", strings.Join(r.Revealed, ", "))
	if sp == nil {
		return
	}
	if sp.Error != "" {
		fmt.Fprintf(w, "  split: cannot plan: %s\n", sp.Error)
		return
	}
	fmt.Fprintf(w, "  split without decryption, as the appliance would do it:\n")
	for i, p := range sp.Packages {
		kind := "visible"
		if p.Hidden {
			kind = "hidden"
		}
		ris := make([]string, len(p.RecipientInfos))
		for j, n := range p.RecipientInfos {
			ris[j] = fmt.Sprint(n)
		}
		fmt.Fprintf(w, "    package %d (%s) to %s: recipientinfos #%s of %s\n", i+1, kind,
			strings.Join(p.Recipients, ", "), strings.Join(ris, ",#"), strings.Join(p.Owners, ", "))
	}
	for _, d := range sp.Dropped {
		fmt.Fprintf(w, "    recipientinfo #%d dropped: %s\n", d.Index, d.Why)
	}
	for _, rf := range sp.Refused {
		fmt.Fprintf(w, "    <%s> refused: %s %s\n", rf.Recipient, rf.Status, rf.Reason)
	}
}
