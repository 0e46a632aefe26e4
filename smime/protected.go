package smime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/textproto"
)

// Header protection (RFC 9788). The Cryptographic Payload is the entity that is signed (the
// first part of the multipart/signed) and, for an encrypted package, encrypted: its header
// section carries the message's header fields, its Content-Type says hp="cipher" (signed and
// encrypted) or hp="clear" (signed only), and, when encrypted, one HP-Outer field per field of
// the outer header records what travelled in clear. The outer header of an encrypted package is
// obscured by the Header Confidentiality Policy hcp_baseline: the Subject becomes "[...]", and
// Keywords and Comments are left out.

// Values of the hp parameter of the Cryptographic Payload's Content-Type.
const (
	HPCipher = "cipher" // signed and encrypted: the outer header is obscured
	HPClear  = "clear"  // signed only: the outer header is the protected one
)

// ObscuredSubject is what hcp_baseline puts in place of the Subject.
const ObscuredSubject = "[...]"

// ErrProtect reports an entity that cannot carry protected headers.
var ErrProtect = errors.New("smime: cannot protect header")

// HCPBaseline is RFC 9788's hcp_baseline for one field: the value the outer header carries, or
// ok false when the field is left out of it.
func HCPBaseline(name, value string) (out string, ok bool) {
	switch strings.ToLower(name) {
	case "subject":
		return ObscuredSubject, true
	case "keywords", "comments":
		return "", false
	}
	return value, true
}

// ObscureOuter applies [HCPBaseline] to every field of h; each field keeps its place, and the
// fields it does not change keep their raw bytes.
func ObscureOuter(h *textproto.Header) {
	type field struct {
		raw      []byte
		key, val string
	}
	var fields []field
	for f := h.Fields(); f.Next(); {
		v, ok := HCPBaseline(f.Key(), f.Value())
		switch raw, err := f.Raw(); {
		case !ok:
		case v == f.Value() && err == nil:
			fields = append(fields, field{raw: append([]byte(nil), raw...)})
		default:
			fields = append(fields, field{key: f.Key(), val: v})
		}
	}
	var out textproto.Header
	for i := len(fields) - 1; i >= 0; i-- { // Add and AddRaw put a field on top
		if fields[i].raw != nil {
			out.AddRaw(fields[i].raw)
		} else {
			out.Add(fields[i].key, fields[i].val)
		}
	}
	*h = out
}

// Protect returns the Cryptographic Payload made from entity (as [Split] makes it: its Content-*
// fields, a blank line, the body, canonical): the entity's own Content-* fields, with hp=mode on
// its Content-Type, then every field of protected (raw, in order), then, for [HPCipher], one
// HP-Outer field per field of outer (the obscured header). With legacy set and mode
// [HPCipher], a single text/plain body gets a Legacy Display Element: the Subject, which the
// outer header hides, as a first line of the body, marked hp-legacy-display="1"; other bodies
// are left as they are (RFC 9788 makes the element optional).
func Protect(entity []byte, protected textproto.Header, mode string, outer textproto.Header, legacy bool) ([]byte, error) {
	if mode != HPCipher && mode != HPClear {
		return nil, fmt.Errorf("%w: hp mode %q", ErrProtect, mode)
	}
	r := bytes.NewReader(entity)
	br := bufio.NewReader(r)
	eh, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrProtect, ErrMalformed, err)
	}
	body := entity[len(entity)-r.Len()-br.Buffered():]
	mt, params, err := ParseContentType(eh.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtect, err)
	}
	params["hp"] = mode
	var display []byte
	if legacy && mode == HPCipher && mt == "text/plain" {
		if display = legacyDisplay(protected, params["charset"], eh.Get("Content-Transfer-Encoding")); display != nil {
			params["hp-legacy-display"] = "1"
		}
	}
	ct := mime.FormatMediaType(mt, params)
	if ct == "" {
		return nil, fmt.Errorf("%w: Content-Type %q cannot be written again", ErrProtect, eh.Get("Content-Type"))
	}

	var head bytes.Buffer
	head.WriteString("Content-Type: " + foldParams(ct) + "\r\n")
	for f := eh.Fields(); f.Next(); {
		if strings.EqualFold(f.Key(), "Content-Type") {
			continue
		}
		raw, err := f.Raw()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtect, err)
		}
		head.Write(raw)
	}
	if err := writeOuter(&head, protected); err != nil {
		return nil, err
	}
	if mode == HPCipher {
		for f := outer.Fields(); f.Next(); {
			if IsContentField(f.Key()) || strings.EqualFold(f.Key(), "MIME-Version") {
				continue
			}
			head.WriteString(fold("HP-Outer: "+f.Key()+": "+unfoldValue(f.Value())) + "\r\n")
		}
	}
	head.WriteString("\r\n")
	out := Canonicalize(head.Bytes())
	out = append(out, display...)
	return append(out, body...), nil
}

// foldParams breaks a Content-Type value before each parameter, so no line grows long.
func foldParams(ct string) string { return strings.ReplaceAll(ct, "; ", ";\r\n ") }

// fold breaks a header field line at spaces so that no line is longer than 78 characters where
// a space allows it (RFC 5322 section 2.2.3); a word longer than a line stays whole.
func fold(line string) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Split(line, " ") {
		switch {
		case i == 0:
		case n+1+len(w) > 78:
			b.WriteString("\r\n")
			n = 0
			fallthrough
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}

// unfoldValue is a field value unfolded, for an HP-Outer field.
func unfoldValue(v string) string {
	return strings.Join(strings.Fields(strings.NewReplacer("\r", " ", "\n", " ").Replace(v)), " ")
}

// legacyDisplay is the Legacy Display Element of a text/plain body in the body's transfer
// encoding, or nil when the body's charset or encoding cannot carry it as it is.
func legacyDisplay(protected textproto.Header, charset, cte string) []byte {
	subject := protected.Get("Subject")
	if subject == "" {
		return nil
	}
	if dec, err := new(mime.WordDecoder).DecodeHeader(subject); err == nil {
		subject = dec
	}
	subject = unfoldValue(subject)
	ascii := true
	for i := 0; i < len(subject); i++ {
		ascii = ascii && subject[i] < 0x80
	}
	cs := strings.ToLower(charset)
	if !ascii && (cs != "utf-8" || !utf8.ValidString(subject)) {
		return nil
	}
	text := "Subject: " + subject + "\r\n\r\n"
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "", "7bit":
		if !ascii {
			return nil
		}
		return []byte(text)
	case "8bit":
		return []byte(text)
	case "quoted-printable":
		var b bytes.Buffer
		w := quotedprintable.NewWriter(&b)
		io.WriteString(w, text) // a bytes.Buffer does not fail
		w.Close()
		return Canonicalize(b.Bytes())
	}
	return nil
}

// Protected is what a Cryptographic Payload says about the header, as [ReadProtected] reads it.
type Protected struct {
	Mode   string           // the hp parameter: HPCipher, HPClear, or "" when the payload has none
	Header textproto.Header // the payload's header fields other than Content-* and HP-Outer
	Outer  []string         // the HP-Outer values ("Subject: [...]"), in order
	Legacy bool             // the payload's Content-Type says hp-legacy-display="1"
}

// ReadProtected reads the header of a Cryptographic Payload: entity is the signed content (the
// first part of a multipart/signed), or a multipart/signed entity, whose first part is read.
func ReadProtected(entity []byte) (*Protected, error) {
	if s, err := ParseSigned(entity); err == nil {
		entity = s.Content
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(entity)))
	if err != nil {
		return nil, fmt.Errorf("failed to read protected header: %w: %w", ErrMalformed, err)
	}
	p := &Protected{}
	if _, params, err := ParseContentType(h.Get("Content-Type")); err == nil {
		p.Mode = params["hp"]
		p.Legacy = params["hp-legacy-display"] == "1"
	}
	for f := h.Fields(); f.Next(); {
		switch k := f.Key(); {
		case strings.EqualFold(k, "HP-Outer"):
			p.Outer = append(p.Outer, f.Value())
		case IsContentField(k), strings.EqualFold(k, "MIME-Version"):
		default:
			p.Header.Add(k, f.Value())
		}
	}
	// Add puts each field on top; put them back in their order.
	var ordered textproto.Header
	for f := p.Header.Fields(); f.Next(); {
		ordered.Add(f.Key(), f.Value())
	}
	p.Header = ordered
	return p, nil
}
