package smime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// maxNesting bounds the multipart recursion of Encode7bit on hostile input.
const maxNesting = 32

// ErrTooDeep reports MIME nesting deeper than Encode7bit follows.
var ErrTooDeep = errors.New("smime: mime nesting too deep")

// Encode7bit returns a canonical entity in a form that no relay will re-encode: every leaf part
// whose body has 8-bit bytes, NULs or lines over 998 octets gets quoted-printable (text/*) or
// base64 (everything else). RFC 8551 section 3.1.3 asks for this before signing a
// multipart/signed that travels in clear, because an MTA that downgrades 8-bit mail for a next
// hop without 8BITMIME (Postfix does) would otherwise break the signature. Inside encryption it
// is unnecessary. An entity that is already 7-bit comes back unchanged; multipart structure,
// boundaries, preambles and header fields other than Content-Transfer-Encoding are kept byte for
// byte. Header fields with raw 8-bit text stay as they are: re-encoding them would change what
// they say.
func Encode7bit(entity []byte) ([]byte, error) {
	if is7bit(entity) {
		return entity, nil
	}
	return encode7bit(entity, 0)
}

func encode7bit(entity []byte, depth int) ([]byte, error) {
	if depth > maxNesting {
		return nil, fmt.Errorf("failed to encode entity: %w", ErrTooDeep)
	}
	head, body := splitEntity(entity)
	if is7bit(body) {
		return entity, nil
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, fmt.Errorf("failed to read part header: %w: %w", ErrMalformed, err)
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		mt, params = "text/plain", nil
	}
	cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		out, err := encodeParts(body, params["boundary"], depth)
		if err != nil {
			return nil, err
		}
		return join(head, out), nil
	case mt == "message/rfc822" || mt == "message/global":
		// RFC 2046 section 5.2.1 forbids encoding a message/rfc822 body; its own parts can be.
		inner, err := encode7bit(body, depth+1)
		if err != nil {
			return nil, err
		}
		return join(head, inner), nil
	case cte == "base64" || cte == "quoted-printable":
		return entity, nil // already encoded; 8-bit bytes in it are the sender's error
	}

	var enc bytes.Buffer
	newCTE := "base64"
	if strings.HasPrefix(mt, "text/") {
		newCTE = "quoted-printable"
		w := quotedprintable.NewWriter(&enc)
		w.Write(body)
		w.Close()
	} else {
		w := NewBase64Writer(&enc)
		w.Write(body)
		w.Close()
	}
	var out bytes.Buffer
	fields := h.Fields()
	for fields.Next() {
		if strings.EqualFold(fields.Key(), "Content-Transfer-Encoding") {
			continue
		}
		raw, err := fields.Raw()
		if err != nil {
			return nil, fmt.Errorf("failed to write header field %q: %w", fields.Key(), err)
		}
		out.Write(raw)
	}
	out.WriteString("Content-Transfer-Encoding: " + newCTE + "\r\n\r\n")
	out.Write(enc.Bytes())
	return out.Bytes(), nil
}

// encodeParts re-encodes each part between the delimiters and keeps everything else.
func encodeParts(body []byte, boundary string, depth int) ([]byte, error) {
	var out bytes.Buffer
	_, start, final, ok := findDelimiter(body, 0, boundary)
	if !ok {
		return nil, fmt.Errorf("failed to encode multipart: %w: no boundary %q", ErrMalformed, boundary)
	}
	out.Write(body[:start]) // preamble and first delimiter line
	for !final {
		next, after, f, ok := findDelimiter(body, start, boundary)
		if !ok {
			return nil, fmt.Errorf("failed to encode multipart: %w: no closing boundary %q", ErrMalformed, boundary)
		}
		end := max(start, trimEOL(body, next))
		part, err := encode7bit(body[start:end], depth+1)
		if err != nil {
			return nil, err
		}
		out.Write(part)
		out.Write(body[end:after]) // line ending and delimiter line
		start, final = after, f
	}
	out.Write(body[start:]) // epilogue
	return out.Bytes(), nil
}

// join undoes splitEntity.
func join(head, body []byte) []byte {
	out := make([]byte, 0, len(head)+2+len(body))
	return append(append(append(out, head...), crlf...), body...)
}

// splitEntity splits a canonical entity after the blank line that ends its header; the header
// part keeps its final CRLF and the blank line is dropped.
func splitEntity(e []byte) (head, body []byte) {
	if bytes.HasPrefix(e, crlf) {
		return []byte{}, e[2:]
	}
	if i := bytes.Index(e, []byte("\r\n\r\n")); i >= 0 {
		return e[:i+2], e[i+4:]
	}
	return e, nil
}

// is7bit reports whether b is 7bit data in the RFC 2045 section 2.7 sense: no 8-bit bytes, no
// NUL, and lines of at most 998 octets.
func is7bit(b []byte) bool {
	line := 0
	for _, c := range b {
		switch {
		case c >= 0x80 || c == 0:
			return false
		case c == '\n':
			line = 0
		default:
			line++
			if line > 998+1 { // the CR before LF does not count
				return false
			}
		}
	}
	return true
}
