package smime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

var (
	// ErrNotPKCS7MIME reports a message that is not an application/pkcs7-mime package.
	ErrNotPKCS7MIME = errors.New("smime: not an application/pkcs7-mime message")
	// ErrTooLarge reports input beyond the limit given to [Parse].
	ErrTooLarge = errors.New("smime: message too large")
	// ErrMissingSMIMEType reports a package without an smime-type parameter; the DER's content
	// type then has to decide what it is.
	ErrMissingSMIMEType = errors.New("smime: smime-type parameter missing")
)

// Package is an application/pkcs7-mime message read by [Parse].
type Package struct {
	Header textproto.Header // the outer header, raw fields kept
	// MediaType is application/pkcs7-mime, application/x-pkcs7-mime (RFC 2311 clients), or
	// application/octet-stream when a *.p7m file name says what it is (RFC 8551 section 3.2.1).
	MediaType string
	// SMIMEType is the smime-type parameter in its registered spelling, or "" when the parameter
	// is missing or not one RFC 8551 or RFC 5083 defines; see [Package.CheckType].
	SMIMEType string
	// RawSMIMEType is the parameter as written.
	RawSMIMEType string
	DER          []byte // the decoded body
}

// CheckType says whether the smime-type parameter could be trusted: nil, an error wrapping
// [ErrMissingSMIMEType], or one wrapping [ErrUnknownSMIMEType] that quotes the value. Either
// error is advisory: the caller should then tell the kind from the DER.
func (p *Package) CheckType() error {
	switch {
	case p.SMIMEType != "":
		return nil
	case p.RawSMIMEType == "":
		return fmt.Errorf("failed to read smime-type of %s: %w", p.MediaType, ErrMissingSMIMEType)
	default:
		return fmt.Errorf("failed to read smime-type of %s: %w: %q", p.MediaType, ErrUnknownSMIMEType, p.RawSMIMEType)
	}
}

// Parse reads an application/pkcs7-mime message (or a bare MIME entity of that type) and
// decodes its body. It reads at most maxSize bytes of input and fails with [ErrTooLarge]
// beyond that, so memory stays bounded by maxSize. A message of another type fails with
// [ErrNotPKCS7MIME] naming the type found (multipart/signed goes to [ParseSigned]).
func Parse(r io.Reader, maxSize int64) (*Package, error) {
	br := bufio.NewReader(&capReader{r: r, n: maxSize})
	h, err := textproto.ReadHeader(br)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("failed to read header: %w", ErrTooLarge)
		}
		return nil, fmt.Errorf("failed to read header: %w: %w", ErrMalformed, err)
	}
	ct := h.Get("Content-Type")
	mt, params, err := ParseContentType(ct)
	if err != nil {
		return nil, fmt.Errorf("failed to parse content type %q: %w: %w", ct, ErrNotPKCS7MIME, err)
	}
	p := &Package{Header: h, MediaType: mt}
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
	case "application/octet-stream":
		if !p7mName(params["name"]) && !p7mName(dispositionFilename(h)) {
			return nil, fmt.Errorf("failed to parse package: %w: content type %q without a .p7m name", ErrNotPKCS7MIME, mt)
		}
	default:
		return nil, fmt.Errorf("failed to parse package: %w: content type %q", ErrNotPKCS7MIME, mt)
	}
	p.RawSMIMEType = params["smime-type"]
	p.SMIMEType, _ = canonicalType(p.RawSMIMEType)

	dec, err := bodyDecoder(h.Get("Content-Transfer-Encoding"), br)
	if err != nil {
		return nil, err
	}
	p.DER, err = io.ReadAll(dec)
	if err != nil {
		if errors.Is(err, ErrTooLarge) {
			return nil, fmt.Errorf("failed to read body: %w", ErrTooLarge)
		}
		return nil, fmt.Errorf("failed to decode body: %w: %w", ErrMalformed, err)
	}
	if len(p.DER) == 0 {
		return nil, fmt.Errorf("failed to decode body: %w: empty", ErrMalformed)
	}
	return p, nil
}

func p7mName(name string) bool {
	return strings.HasSuffix(strings.ToLower(strings.TrimSpace(name)), ".p7m")
}

func dispositionFilename(h textproto.Header) string {
	_, params, _ := mime.ParseMediaType(h.Get("Content-Disposition"))
	return params["filename"]
}

// bodyDecoder undoes the Content-Transfer-Encoding cte. Without one, or with a 7bit label
// that some clients put on base64, the first byte decides: DER starts with a SEQUENCE tag.
func bodyDecoder(cte string, br *bufio.Reader) (io.Reader, error) {
	switch cte = strings.ToLower(strings.TrimSpace(cte)); cte {
	case "base64":
		return newBase64Reader(br), nil
	case "binary", "8bit":
		return br, nil
	case "", "7bit":
		for {
			b, err := br.Peek(1)
			if err != nil {
				return br, nil // empty: the caller reports it
			}
			if b[0] == ' ' || b[0] == '\t' || b[0] == '\r' || b[0] == '\n' {
				br.ReadByte()
				continue
			}
			if b[0] == 0x30 {
				return br, nil
			}
			return newBase64Reader(br), nil
		}
	}
	return nil, fmt.Errorf("failed to decode body: %w: unsupported content-transfer-encoding %q", ErrMalformed, cte)
}

// base64Filter drops white space from base64 text, so lines of any length and trailing blanks
// decode, and supplies the padding that some encoders leave off.
type base64Filter struct {
	r   io.Reader
	n   int // base64 characters passed on, to know how much padding is missing
	pad string
	eof bool
}

func (f *base64Filter) Read(p []byte) (int, error) {
	for {
		if f.eof {
			if f.pad == "" {
				return 0, io.EOF
			}
			n := copy(p, f.pad)
			f.pad = f.pad[n:]
			return n, nil
		}
		n, err := f.r.Read(p)
		k := 0
		for _, c := range p[:n] {
			if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
				continue
			}
			p[k] = c
			k++
		}
		f.n += k
		if err == io.EOF {
			f.eof = true
			switch f.n % 4 {
			case 2:
				f.pad = "=="
			case 3:
				f.pad = "="
			}
		} else if err != nil {
			return k, err
		}
		if k > 0 {
			return k, nil
		}
	}
}

// capReader passes on at most n bytes and fails with ErrTooLarge if there is more.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		for {
			m, err := c.r.Read(one[:])
			if m > 0 {
				return 0, ErrTooLarge
			}
			if err != nil {
				return 0, err
			}
		}
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	m, err := c.r.Read(p)
	c.n -= int64(m)
	return m, err
}
