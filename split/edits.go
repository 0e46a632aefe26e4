package split

import (
	nettextproto "net/textproto"
	"regexp"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// HeaderEdits are the changes one package makes to the submitted header.
// Fields not mentioned are left byte for byte as submitted.
type HeaderEdits struct {
	// Delete lists fields removed entirely (Bcc, Resent-Bcc and the trace
	// fields that name earlier envelope recipients, such as X-Original-To).
	Delete []string
	// Bcc, when not empty, is written as a fresh Bcc field after Delete;
	// it only ever names the package's own hidden recipients.
	Bcc []string
	// StripReceivedFor removes "for <address>" clauses from Received
	// fields, since an earlier hop may have named a hidden recipient there.
	StripReceivedFor bool
}

// receivedFor matches a Received "for" clause with one or more paths, at the
// start of the text it is given. A path may lack its closing bracket: a
// hostile or broken hop writes "for <carol@y.test" and readers still see it.
var receivedFor = regexp.MustCompile(`^(?i)for\s+(?:<[^>]*>|<?[^\s;()<>]+)(?:\s*,\s*(?:<[^>]*>|<?[^\s;()<>]+))*`)

// Apply edits h in place. Kept fields keep their raw bytes and order (DKIM
// and trace order care); a new Bcc field takes the place of the first removed
// one, or goes last.
func (e HeaderEdits) Apply(h *textproto.Header) {
	del := map[string]bool{}
	for _, k := range e.Delete {
		del[nettextproto.CanonicalMIMEHeaderKey(k)] = true
	}
	if len(e.Bcc) > 0 {
		del["Bcc"] = true
	}
	type field struct {
		key, value string
		raw        []byte
	}
	var fs []field
	bccAt := -1
	for it := h.Fields(); it.Next(); {
		f := field{key: it.Key(), value: it.Value()}
		if del[f.key] {
			if bccAt < 0 && (f.key == "Bcc" || f.key == "Resent-Bcc") {
				bccAt = len(fs)
			}
			continue
		}
		if f.key == "Received" && e.StripReceivedFor {
			if nv := stripReceived(f.value); nv != f.value {
				f.value = nv
				fs = append(fs, f)
				continue
			}
		}
		if raw, err := it.Raw(); err == nil {
			f.raw = append([]byte(nil), raw...)
		}
		fs = append(fs, f)
	}
	if len(e.Bcc) > 0 {
		if bccAt < 0 {
			bccAt = len(fs)
		}
		bcc := field{key: "Bcc", value: strings.Join(e.Bcc, ", ")}
		fs = append(fs[:bccAt], append([]field{bcc}, fs[bccAt:]...)...)
	}
	var out textproto.Header
	// Add and AddRaw put a field on top, so rebuild from the bottom up.
	for i := len(fs) - 1; i >= 0; i-- {
		if fs[i].raw != nil {
			out.AddRaw(fs[i].raw)
		} else {
			out.Add(fs[i].key, fs[i].value)
		}
	}
	*h = out
}

// stripReceived removes every "for" clause that names an address. A clause
// without one ("for <postmaster>" is not an address, "for for" is not a
// path) is kept, and the scan resumes right after its "for" so that it
// cannot hide a following clause. Removing a clause can join the text around
// it into a new one ("fo" + "r <x@y>"), so it repeats until nothing changes.
func stripReceived(v string) string {
	for {
		nv := stripReceivedOnce(v)
		if nv == v {
			return v
		}
		v = nv
	}
}

func stripReceivedOnce(v string) string {
	var b strings.Builder
	last := 0 // v[last:i] is pending output
	for i := 0; i+3 <= len(v); {
		if !strings.EqualFold(v[i:i+3], "for") || (i > 0 && isWordByte(v[i-1])) {
			i++
			continue
		}
		m := receivedFor.FindString(v[i:])
		if m == "" || !strings.Contains(m, "@") {
			i += 3
			continue
		}
		// Take the blanks before the clause with it, as a hop that never
		// wrote it would have.
		j := i
		for j > last && isSpaceByte(v[j-1]) {
			j--
		}
		b.WriteString(v[last:j])
		i += len(m)
		last = i
	}
	if last == 0 {
		return v
	}
	b.WriteString(v[last:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isSpaceByte(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}
