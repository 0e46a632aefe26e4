package split

import (
	"regexp"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// HeaderEdits are one package's header, decided by [Make] and carried as data
// so that nothing downstream re-reads the header to guess: the header is an
// allowlist, and a submitted field that no entry of Fields names is not
// carried.
type HeaderEdits struct {
	// Fields is the package's header, top to bottom.
	Fields []FieldEdit
	// Dropped names, for the log, each submitted field the package does not
	// carry or carries rewritten, with why ("X-Mailer", "Received (for
	// clause removed)"). Apply does not read it.
	Dropped []string
	// Bcc, when not empty, are the addresses of the fresh Bcc (or
	// Resent-Bcc) field that Fields writes: only ever the package's own
	// hidden recipients (in Group mode, all of them).
	Bcc []string
}

// FieldEdit is one field of a package's header.
type FieldEdit struct {
	Key string // field name
	// N picks the submitted field: the Nth field named Key, from the top
	// (0 is the first). N < 0 writes a new field.
	N int
	// Value, when not "", replaces the submitted field's value (its place
	// is kept); a new field takes it as its value. "" keeps the field's raw
	// bytes as submitted.
	Value string
}

// receivedFor matches a Received "for" clause with one or more paths, at the
// start of the text it is given. A path may lack its closing bracket: a
// hostile or broken hop writes "for <carol@y.test" and readers still see it.
var receivedFor = regexp.MustCompile(`^(?i)for\s+(?:<[^>]*>|<?[^\s;()<>]+)(?:\s*,\s*(?:<[^>]*>|<?[^\s;()<>]+))*`)

// Apply replaces h with the package's header. Kept fields keep their raw
// bytes (DKIM and trace order care); a field Fields names that h lacks (the
// Content-* fields, which live in the signed entity) is skipped.
func (e HeaderEdits) Apply(h *textproto.Header) {
	type src struct {
		raw   []byte
		value string
	}
	byKey := map[string][]src{}
	for it := h.Fields(); it.Next(); {
		k := canonicalKey(it.Key())
		s := src{value: it.Value()}
		if raw, err := it.Raw(); err == nil {
			s.raw = append([]byte(nil), raw...)
		}
		byKey[k] = append(byKey[k], s)
	}
	var out textproto.Header
	// Add and AddRaw put a field on top, so build from the bottom up.
	for i := len(e.Fields) - 1; i >= 0; i-- {
		f := e.Fields[i]
		k := canonicalKey(f.Key)
		switch {
		case f.N < 0:
			if f.Value != "" {
				out.Add(k, f.Value)
			}
		case f.N < len(byKey[k]):
			s := byKey[k][f.N]
			switch {
			case f.Value != "":
				out.Add(k, f.Value)
			case s.raw != nil:
				out.AddRaw(s.raw)
			default:
				out.Add(k, s.value)
			}
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
