package smime

import (
	"errors"
	"fmt"
	"mime"
	"strings"
)

// ErrContentType reports a Content-Type field that does not parse.
var ErrContentType = errors.New("smime: content-type does not parse")

// ParseContentType reads a Content-Type field value as RFC 2045 and RFC 2231 define it: folding
// is undone, comments (nested, with quoted pairs) are removed outside quoted strings, the type,
// subtype and parameter names are matched without regard to case (and returned in lower case),
// quoted strings are unquoted, and RFC 2231 continuations and charset-encoded values are joined
// and decoded (by mime.ParseMediaType). A value with a duplicate or malformed parameter fails,
// so that no parameter is read one way here and another way by a recipient's client.
func ParseContentType(v string) (mediaType string, params map[string]string, err error) {
	v = strings.NewReplacer("\r\n", "", "\r", "", "\n", "").Replace(v)
	clean, err := stripComments(v)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrContentType, err)
	}
	mt, params, err := mime.ParseMediaType(clean)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrContentType, err)
	}
	if !strings.Contains(mt, "/") {
		return "", nil, fmt.Errorf("%w: %q has no subtype", ErrContentType, mt)
	}
	return mt, params, nil
}

// stripComments removes RFC 5322 comments outside quoted strings, each replaced by one space.
func stripComments(v string) (string, error) {
	if !strings.ContainsRune(v, '(') {
		return v, nil
	}
	var b strings.Builder
	depth := 0
	quoted := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && (quoted || depth > 0):
			if i+1 < len(v) {
				i++
				if depth == 0 {
					b.WriteByte(c)
					b.WriteByte(v[i])
				}
			}
		case quoted:
			b.WriteByte(c)
			if c == '"' {
				quoted = false
			}
		case c == '(':
			depth++
		case c == ')':
			if depth == 0 {
				return "", errors.New("unbalanced comment")
			}
			if depth--; depth == 0 {
				b.WriteByte(' ')
			}
		case depth > 0:
		case c == '"':
			quoted = true
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	if depth != 0 || quoted {
		return "", errors.New("unterminated comment or quoted string")
	}
	return b.String(), nil
}
