package lists

import (
	"bytes"
	"fmt"
	"time"

	"appliance/cms"
	"appliance/queue"
	"appliance/smime"
	"appliance/split"

	"github.com/emersion/go-message/textproto"
)

// MaxExpansionHistory is ub-ml-expansion-history (RFC 2634 section 4.2.1): a message that
// already went through this many list expansions is not expanded again.
const MaxExpansionHistory = cms.MaxExpansionHistory

// extendHistory checks the history a post arrived with and adds this expansion to it, as the
// list's signed attribute.
func (l *mailList) extendHistory(old []cms.MLData, now time.Time) (cms.Attribute, error) {
	a, err := cms.ExtendExpansionHistory(old, l.Chain[0], now)
	if err != nil {
		return cms.Attribute{}, fmt.Errorf("failed to expand %q: %w", l.Address, err)
	}
	return a, nil
}

// listHeader builds the shared start of every member's package: the post's header with To and
// Cc as the poster wrote them (they name the list, not its members), Bcc and delivery fields
// gone, List-Id and List-Post added (RFC 2919, RFC 2369).
func (a *Agent) listHeader(id string, env queue.Envelope, l *mailList, outer textproto.Header, smimeType string) *smime.ListParts {
	h := outer.Copy()
	for _, k := range []string{"Bcc", "Resent-Bcc", "Delivered-To", "X-Original-To", "Return-Path", "List-Id", "List-Post"} {
		h.Del(k)
	}
	h.Add("List-Post", "<mailto:"+l.Address+">")
	h.Add("List-Id", l.listID)

	var b bytes.Buffer
	b.WriteString(split.Trace{Helo: env.Helo, ClientAddr: env.ClientAddr, By: a.opts.Hostname, ID: id, At: a.opts.Now()}.Field())
	fields := h.Fields()
	for fields.Next() {
		raw, err := fields.Raw()
		if err != nil {
			continue // the post's header was read by the same parser; this does not happen
		}
		b.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			b.WriteString("\r\n")
		}
	}
	return smime.NewListParts(b.Bytes(), smimeType, l.Chain)
}
