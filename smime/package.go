package smime

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// smime-type parameter values of application/pkcs7-mime (RFC 8551 section 3.2.2; RFC 5083
// section 3 registers authEnveloped-data).
const (
	TypeEnvelopedData     = "enveloped-data"
	TypeAuthEnvelopedData = "authEnveloped-data"
	TypeSignedData        = "signed-data"
	TypeCertsOnly         = "certs-only"
	TypeCompressedData    = "compressed-data"
)

// LineLength is the number of base64 characters per line; RFC 2045 section 6.8 caps it at 76.
const LineLength = 76

// ErrUnknownSMIMEType reports an smime-type value outside RFC 8551 and RFC 5083.
var ErrUnknownSMIMEType = errors.New("smime: unknown smime-type")

// canonicalType returns the registered spelling of an smime-type value, matched without regard
// to case because senders in the wild disagree about "authEnveloped-data".
func canonicalType(s string) (string, bool) {
	for _, t := range []string{TypeEnvelopedData, TypeAuthEnvelopedData, TypeSignedData, TypeCertsOnly, TypeCompressedData} {
		if strings.EqualFold(s, t) {
			return t, true
		}
	}
	return "", false
}

// WritePackage writes a complete application/pkcs7-mime message: the outer header (minus any
// Content-* fields and MIME-Version), the MIME fields of the package, and der as base64 in
// [LineLength]-column CRLF lines. der is streamed through, never held as base64 in memory;
// a *bytes.Reader, or anything in package cms that implements io.WriterTo, will do.
func WritePackage(w io.Writer, outer textproto.Header, smimeType string, der io.WriterTo) error {
	t, ok := canonicalType(smimeType)
	if !ok {
		return fmt.Errorf("failed to write package: %w: %q", ErrUnknownSMIMEType, smimeType)
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	if err := writeOuter(bw, outer); err != nil {
		return err
	}
	bw.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=" + t + ";\r\n name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\n" +
		"\r\n")
	enc := NewBase64Writer(bw)
	if _, err := der.WriteTo(enc); err != nil {
		return fmt.Errorf("failed to write package body: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("failed to write package body: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("failed to write package: %w", err)
	}
	return nil
}

// WriteSigned writes the signed-only (clear-text) package: the outer header (minus Content-*
// fields and MIME-Version), MIME-Version, and signed, a multipart/signed entity made by
// [SignedEntity], whose own header supplies the Content-Type.
func WriteSigned(w io.Writer, outer textproto.Header, signed []byte) error {
	bw := bufio.NewWriter(w)
	if err := writeOuter(bw, outer); err != nil {
		return err
	}
	bw.WriteString("MIME-Version: 1.0\r\n")
	bw.Write(signed)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("failed to write signed package: %w", err)
	}
	return nil
}

// NewBase64Writer returns a writer that base64-encodes what it is given into w as lines of
// [LineLength] characters, each ending in CRLF. Close flushes the last, possibly short, line;
// it does not close w. Memory use is constant whatever the size of the input.
func NewBase64Writer(w io.Writer) io.WriteCloser {
	lw := &lineWriter{w: w}
	return &base64Writer{enc: base64.NewEncoder(base64.StdEncoding, lw), lw: lw}
}

type base64Writer struct {
	enc io.WriteCloser
	lw  *lineWriter
}

func (b *base64Writer) Write(p []byte) (int, error) { return b.enc.Write(p) }

func (b *base64Writer) Close() error {
	if err := b.enc.Close(); err != nil {
		return err
	}
	return b.lw.finish()
}

// lineWriter inserts CRLF after every LineLength bytes written through it.
type lineWriter struct {
	w   io.Writer
	col int
}

var crlf = []byte("\r\n")

func (l *lineWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		chunk := min(LineLength-l.col, len(p))
		m, err := l.w.Write(p[:chunk])
		n += m
		l.col += m
		if err != nil {
			return n, err
		}
		p = p[chunk:]
		if l.col == LineLength {
			if _, err := l.w.Write(crlf); err != nil {
				return n, err
			}
			l.col = 0
		}
	}
	return n, nil
}

func (l *lineWriter) finish() error {
	if l.col == 0 {
		return nil
	}
	l.col = 0
	_, err := l.w.Write(crlf)
	return err
}
