package smime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// DefaultContentType is what RFC 2045 says a body without Content-Type is; it is written out
// inside the entity because the signed part must say what it is on its own.
const DefaultContentType = "text/plain; charset=us-ascii"

var (
	// ErrMalformed reports input that is not a well-formed message or MIME part.
	ErrMalformed = errors.New("smime: malformed message")
	// ErrBinaryBody reports a Content-Transfer-Encoding: binary body. Signing needs canonical CRLF
	// line endings, which would corrupt binary data, and binary cannot travel in a 7bit/8bit
	// transport anyway; the submitter must encode it (base64) first.
	ErrBinaryBody = errors.New("smime: binary content-transfer-encoding cannot be signed")
)

// Split reads a submitted RFC 5322 message and separates it into the outer header, which stays
// in clear, and the inner entity to sign and encrypt: every Content-* field (Content-Type
// defaulting to [DefaultContentType]) followed by the body, with canonical CRLF line endings.
// MIME-Version is dropped from the outer header because the package writers emit their own.
// The outer header keeps each field's raw bytes, so non-ASCII and encoded-word values survive.
//
// Split holds the whole message in memory; the caller bounds its size (the SMTP size limit).
func Split(msg io.Reader) (outer textproto.Header, entity []byte, err error) {
	br := bufio.NewReader(msg)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return textproto.Header{}, nil, fmt.Errorf("failed to read message header: %w: %w", ErrMalformed, err)
	}
	if cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))); cte == "binary" {
		return textproto.Header{}, nil, fmt.Errorf("failed to split message: %w", ErrBinaryBody)
	}
	// The entity is built in one buffer of the right size when the reader knows its length
	// (seal passes a *bytes.Reader): a 1 MB body is then copied once, not regrown and cloned.
	var room []byte
	if l, ok := msg.(interface{ Len() int }); ok {
		room = Buffer(br.Buffered() + l.Len() + 4<<10)
	}
	inner := bytes.NewBuffer(room)
	if !h.Has("Content-Type") {
		inner.WriteString("Content-Type: " + DefaultContentType + "\r\n")
	}
	outer = h.Copy()
	fields := outer.Fields()
	for fields.Next() {
		k := fields.Key()
		switch {
		case IsContentField(k):
			raw, err := fields.Raw()
			if err != nil {
				return textproto.Header{}, nil, fmt.Errorf("failed to read header field %q: %w", k, err)
			}
			inner.Write(unfoldCR(raw))
			fields.Del()
		case strings.EqualFold(k, "MIME-Version"):
			fields.Del()
		}
	}
	inner.WriteString("\r\n")
	if _, err := inner.ReadFrom(br); err != nil {
		return textproto.Header{}, nil, fmt.Errorf("failed to read message body: %w", err)
	}
	if isCanonical(inner.Bytes()) {
		return outer, inner.Bytes(), nil // inner is ours: no copy needed
	}
	return outer, Canonicalize(inner.Bytes()), nil
}

// unfoldCR turns a bare CR inside a raw header field into a space. Canonicalizing would make it
// a line break, and the rest of the field a line that is not a header field.
func unfoldCR(raw []byte) []byte {
	body := raw[:len(raw)-len(crlfSuffix(raw))]
	if bytes.IndexByte(body, '\r') < 0 {
		return raw
	}
	out := bytes.Clone(raw)
	for i := range body {
		if out[i] == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
			out[i] = ' '
		}
	}
	return out
}

func crlfSuffix(b []byte) []byte {
	if bytes.HasSuffix(b, crlf) {
		return crlf
	}
	return nil
}

// IsContentField reports whether a header field describes the body (RFC 2045 "Content-*") and
// so belongs inside the protected entity rather than in the outer header.
func IsContentField(key string) bool {
	return len(key) > len("Content-") && strings.EqualFold(key[:len("Content-")], "Content-")
}

// Canonicalize returns b with every line ending as CRLF: bare LF and bare CR each become CRLF,
// existing CRLF pairs stay. RFC 8551 section 3.1.1 requires this before signing.
func Canonicalize(b []byte) []byte {
	if isCanonical(b) {
		return bytes.Clone(b)
	}
	out := make([]byte, 0, len(b)+len(b)/32+2)
	for i := 0; i < len(b); i++ {
		switch c := b[i]; c {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(b) && b[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	return out
}

func isCanonical(b []byte) bool {
	// Each CRLF holds one CR and one LF, so the text is canonical exactly when there are as
	// many of each as there are CRLFs. bytes.Count runs vectorized: three passes cost less
	// than one byte-by-byte loop over a large body.
	n := bytes.Count(b, crlf)
	return bytes.Count(b, crlf[:1]) == n && bytes.Count(b, crlf[1:]) == n
}

// writeOuter writes the fields of outer that belong outside a package: everything except the
// Content-* fields and MIME-Version, which the package writer supplies.
func writeOuter(w io.Writer, outer textproto.Header) error {
	fields := outer.Fields()
	for fields.Next() {
		k := fields.Key()
		if IsContentField(k) || strings.EqualFold(k, "MIME-Version") {
			continue
		}
		raw, err := fields.Raw()
		if err != nil {
			return fmt.Errorf("failed to write header field %q: %w", k, err)
		}
		if _, err := w.Write(raw); err != nil {
			return fmt.Errorf("failed to write header: %w", err)
		}
		if !bytes.HasSuffix(raw, []byte("\n")) { // AddRaw takes fields without their CRLF too
			if _, err := w.Write(crlf); err != nil {
				return fmt.Errorf("failed to write header: %w", err)
			}
		}
	}
	return nil
}
