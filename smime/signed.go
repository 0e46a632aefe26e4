package smime

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

var (
	// ErrNotSigned reports a message that is not multipart/signed with a PKCS #7 signature.
	ErrNotSigned = errors.New("smime: not a multipart/signed S/MIME message")
	// ErrUnknownMicAlg reports a hash without an RFC 5751 micalg name.
	ErrUnknownMicAlg = errors.New("smime: no micalg name for hash")
)

// MicAlg returns the micalg parameter value for h as RFC 5751 section 3.4.3.2 spells it.
func MicAlg(h crypto.Hash) (string, error) {
	switch h {
	case crypto.SHA1:
		return "sha-1", nil
	case crypto.SHA224:
		return "sha-224", nil
	case crypto.SHA256:
		return "sha-256", nil
	case crypto.SHA384:
		return "sha-384", nil
	case crypto.SHA512:
		return "sha-512", nil
	}
	return "", fmt.Errorf("failed to name micalg: %w: %v", ErrUnknownMicAlg, h)
}

// SignedEntity returns the multipart/signed entity (RFC 8551 section 3.5) whose first part is
// entity, byte for byte, and whose second is signatureDER, a detached SignedData over exactly
// those bytes, as application/pkcs7-signature. entity must already be canonical ([Split] makes
// it so). micalg names the digest, e.g. "sha-256" (see [MicAlg]). The boundary is random and
// chosen so that it does not occur in entity.
//
// The result starts with its Content-Type field; it is the content to encrypt, or, after
// [WriteSigned], a signed-only message.
func SignedEntity(entity []byte, signatureDER []byte, micalg string) []byte {
	head, tail := SignedEntityParts(entity, signatureDER, micalg)
	b := make([]byte, 0, len(head)+len(entity)+len(tail))
	return append(append(append(b, head...), entity...), tail...)
}

// SignedEntityParts returns what [SignedEntity] puts before and after entity, so that a caller
// that only streams the result (to encrypt it) need not copy a large entity once more.
func SignedEntityParts(entity []byte, signatureDER []byte, micalg string) (head, tail []byte) {
	boundary := newBoundary(entity)
	head = []byte("Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n" +
		" micalg=" + micalg + "; boundary=\"" + boundary + "\"\r\n" +
		"\r\n" +
		"This is an S/MIME signed message\r\n" +
		"\r\n--" + boundary + "\r\n")
	// The CRLF before a delimiter belongs to the delimiter (RFC 2046 section 5.1.1), so the first
	// part is entity exactly, whatever it ends with.
	var b bytes.Buffer
	b.Grow(len(signatureDER)*4/3 + 512)
	b.WriteString("\r\n--" + boundary + "\r\n" +
		"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7s\r\n" +
		"\r\n")
	enc := NewBase64Writer(&b)
	enc.Write(signatureDER) // a bytes.Buffer does not fail
	enc.Close()
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return head, b.Bytes()
}

func newBoundary(entity []byte) string {
	for {
		var r [18]byte
		rand.Read(r[:])
		b := "----smime-" + hex.EncodeToString(r[:])
		if !bytes.Contains(entity, []byte(b)) {
			return b
		}
	}
}

// Signed is a multipart/signed message taken apart.
type Signed struct {
	Header    textproto.Header // the header of the whole message or entity
	MicAlg    string           // the micalg parameter, lower case, "" when absent
	Content   []byte           // the first part exactly as signed (without the CRLF before the boundary)
	Signature []byte           // the DER of the application/pkcs7-signature part
}

// ParseSigned takes apart a multipart/signed message or entity (RFC 1847, RFC 8551 section
// 3.5), returning the signed content byte for byte and the decoded signature. It tolerates LF
// line endings and odd base64 line lengths. A message of another type yields [ErrNotSigned].
func ParseSigned(msg []byte) (*Signed, error) {
	r := bytes.NewReader(msg)
	br := bufio.NewReader(r)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return nil, fmt.Errorf("failed to read header: %w: %w", ErrMalformed, err)
	}
	body := msg[len(msg)-r.Len()-br.Buffered():]

	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("failed to parse content type %q: %w: %w", h.Get("Content-Type"), ErrMalformed, err)
	}
	if mt != "multipart/signed" {
		return nil, fmt.Errorf("failed to parse signed message: %w: content type %q", ErrNotSigned, mt)
	}
	if p := strings.ToLower(params["protocol"]); p != "application/pkcs7-signature" && p != "application/x-pkcs7-signature" {
		return nil, fmt.Errorf("failed to parse signed message: %w: protocol %q", ErrNotSigned, params["protocol"])
	}
	boundary := params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("failed to parse signed message: %w: no boundary", ErrMalformed)
	}

	_, start, _, ok := findDelimiter(body, 0, boundary)
	if !ok {
		return nil, fmt.Errorf("failed to parse signed message: %w: no first boundary", ErrMalformed)
	}
	mid, sigStart, final, ok := findDelimiter(body, start, boundary)
	if !ok || final {
		return nil, fmt.Errorf("failed to parse signed message: %w: no signature part", ErrMalformed)
	}
	end, _, _, ok := findDelimiter(body, sigStart, boundary)
	if !ok {
		return nil, fmt.Errorf("failed to parse signed message: %w: no closing boundary", ErrMalformed)
	}

	sigPart := body[sigStart:max(sigStart, trimEOL(body, end))]
	sbr := bufio.NewReader(bytes.NewReader(sigPart))
	sh, err := textproto.ReadHeader(sbr)
	if err != nil {
		return nil, fmt.Errorf("failed to read signature part header: %w: %w", ErrMalformed, err)
	}
	st, _, _ := mime.ParseMediaType(sh.Get("Content-Type"))
	if st != "application/pkcs7-signature" && st != "application/x-pkcs7-signature" {
		return nil, fmt.Errorf("failed to parse signed message: %w: signature part is %q", ErrNotSigned, st)
	}
	dec, err := bodyDecoder(sh.Get("Content-Transfer-Encoding"), sbr)
	if err != nil {
		return nil, err
	}
	sig, err := io.ReadAll(dec)
	if err != nil {
		return nil, fmt.Errorf("failed to decode signature: %w: %w", ErrMalformed, err)
	}
	return &Signed{
		Header:    h,
		MicAlg:    strings.ToLower(params["micalg"]),
		Content:   body[start:max(start, trimEOL(body, mid))],
		Signature: sig,
	}, nil
}

// findDelimiter finds the next boundary delimiter line at or after from. It returns where the
// line starts, where the line after it starts, and whether it is the close delimiter.
func findDelimiter(body []byte, from int, boundary string) (lineStart, next int, final, ok bool) {
	delim := "--" + boundary
	for i := from; i <= len(body); {
		j := bytes.Index(body[i:], []byte(delim))
		if j < 0 {
			return 0, 0, false, false
		}
		pos := i + j
		i = pos + 1
		if pos > 0 && body[pos-1] != '\n' {
			continue
		}
		rest := body[pos+len(delim):]
		isFinal := bytes.HasPrefix(rest, []byte("--"))
		if isFinal {
			rest = rest[2:]
		}
		// RFC 2046 allows linear white space (transport padding) before the line ending.
		k := 0
		for k < len(rest) && (rest[k] == ' ' || rest[k] == '\t') {
			k++
		}
		switch {
		case k == len(rest):
			return pos, len(body), isFinal, true
		case rest[k] == '\n':
			return pos, len(body) - len(rest) + k + 1, isFinal, true
		case rest[k] == '\r' && k+1 < len(rest) && rest[k+1] == '\n':
			return pos, len(body) - len(rest) + k + 2, isFinal, true
		case isFinal:
			// Text may follow a close delimiter on its line in broken mail; accept it.
			return pos, len(body), true, true
		}
	}
	return 0, 0, false, false
}

// trimEOL returns the end of the part that ends where the delimiter line at lineStart begins:
// the line ending before the delimiter belongs to the delimiter.
func trimEOL(body []byte, lineStart int) int {
	if lineStart > 0 && body[lineStart-1] == '\n' {
		lineStart--
		if lineStart > 0 && body[lineStart-1] == '\r' {
			lineStart--
		}
	}
	return lineStart
}
