package smime

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/emersion/go-message/textproto"
)

// The one normalisation both doors apply to a submitted message: `serve` on the bytes of DATA
// as they stream in (NewNormalizer, then CheckHeader on the header block), `seal` on the file it
// reads (Normalize, which runs the same two). The pipeline runs Normalize again on what it is
// given, which changes nothing in a message that went through it already. What it does:
//
//   - a bare CR or bare LF becomes CRLF (RFC 5321 and RFC 6152 allow them only as a pair; a bare
//     LF that survived into a package could end the DATA of a lenient next hop early);
//   - a line longer than Limits.MaxLineLength octets (CRLF excluded) refuses the message;
//   - the header must parse, have a field, hold no NUL, and stay within MaxHeaderBytes and
//     MaxHeaderFields;
//   - 8-bit bytes in header field bodies and NULs in the body pass as they are: re-encoding a
//     header would change what it says, and the body is made 7-bit (Encode7bit) where it travels
//     in clear.

// Default limits, the configuration's defaults.
const (
	DefaultMaxLineLength   = 2000
	DefaultMaxHeaderBytes  = 1 << 20
	DefaultMaxHeaderFields = 1000
)

// Limits bound what the normalisation accepts. A zero field takes its default; a negative one
// means no bound.
type Limits struct {
	MaxLineLength   int // octets per line, CRLF excluded
	MaxHeaderBytes  int // the header block, its blank line included
	MaxHeaderFields int
}

func (l Limits) withDefaults() Limits {
	if l.MaxLineLength == 0 {
		l.MaxLineLength = DefaultMaxLineLength
	}
	if l.MaxHeaderBytes == 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaderFields == 0 {
		l.MaxHeaderFields = DefaultMaxHeaderFields
	}
	return l
}

// ErrRefused is matched (errors.Is) by every [*RefusedError].
var ErrRefused = errors.New("smime: message refused")

// RefusedError says why the normalisation refuses a message; Text is safe to show a client
// (it never quotes the message).
type RefusedError struct {
	Text   string
	TooBig bool // a size limit, rather than a malformed message
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Err != nil {
		return e.Text + ": " + e.Err.Error()
	}
	return e.Text
}

func (e *RefusedError) Is(target error) bool { return target == ErrRefused }
func (e *RefusedError) Unwrap() error        { return e.Err }

// Normalize returns msg normalised, with its parsed header, or the refusal.
func Normalize(msg []byte, lim Limits) ([]byte, textproto.Header, error) {
	out := make([]byte, 0, len(msg)+len(msg)/64)
	buf := bytes.NewBuffer(out)
	if _, err := buf.ReadFrom(NewNormalizer(bytes.NewReader(msg), lim)); err != nil {
		return nil, textproto.Header{}, err
	}
	out = buf.Bytes()
	h, err := CheckHeader(HeaderBlock(out), lim)
	if err != nil {
		return nil, textproto.Header{}, err
	}
	return out, h, nil
}

// HeaderBlock returns the header of a normalised message: up to and including the blank line
// that ends it, or all of msg when there is none.
func HeaderBlock(msg []byte) []byte {
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		return msg[:2]
	}
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		return msg[:i+4]
	}
	return msg
}

// ReadHeaderBlock reads a normalised message's header block from br: up to and including the
// blank line that ends it, or to the end of the stream when there is none (all of it is header
// then, as HeaderBlock says). Past lim.MaxHeaderBytes it fails with a *RefusedError (TooBig),
// and with the reader's error other than io.EOF.
func ReadHeaderBlock(br *bufio.Reader, lim Limits) ([]byte, error) {
	max := lim.withDefaults().MaxHeaderBytes
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		if max > 0 && len(raw)+len(line) > max {
			return nil, &RefusedError{Text: "header longer than " + strconv.Itoa(max) + " octets", TooBig: true}
		}
		raw = append(raw, line...)
		switch {
		case err == bufio.ErrBufferFull:
			continue
		case err == io.EOF:
			return raw, nil
		case err != nil:
			return nil, err
		case len(line) == 2 && line[0] == '\r':
			return raw, nil
		}
	}
}

// CheckHeader parses a normalised header block (see HeaderBlock) as both doors do.
func CheckHeader(raw []byte, lim Limits) (textproto.Header, error) {
	lim = lim.withDefaults()
	if lim.MaxHeaderBytes > 0 && len(raw) > lim.MaxHeaderBytes {
		return textproto.Header{}, &RefusedError{Text: "header longer than " + strconv.Itoa(lim.MaxHeaderBytes) + " octets", TooBig: true}
	}
	if bytes.IndexByte(raw, 0) >= 0 {
		return textproto.Header{}, &RefusedError{Text: "message header contains NUL"}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return textproto.Header{}, &RefusedError{Text: "malformed message header", Err: err}
	}
	if h.Len() == 0 {
		return textproto.Header{}, &RefusedError{Text: "message has no header"}
	}
	if lim.MaxHeaderFields > 0 && h.Len() > lim.MaxHeaderFields {
		return textproto.Header{}, &RefusedError{Text: "too many header fields"}
	}
	return h, nil
}

// NewNormalizer returns a reader of r with every bare CR and bare LF rewritten to CRLF, that
// fails with a *RefusedError at a line longer than lim.MaxLineLength.
//
// Nearly all mail is already canonical, so a read goes straight into the caller's buffer and is
// checked with vectorised counts; only a chunk with a bare CR or LF (or a CR at its end, whose
// LF is in the next read) is copied and rewritten byte by byte.
func NewNormalizer(r io.Reader, lim Limits) io.Reader {
	return &normalizer{r: r, max: lim.withDefaults().MaxLineLength}
}

type normalizer struct {
	r         io.Reader
	out       []byte // normalised bytes not yet returned
	scratch   []byte // out's backing array, kept for the next slow chunk
	pendingCR bool   // a CR was read and not yet written: its LF may come next
	max       int    // longest line; < 0: no bound
	line      int    // octets of the current line so far, its CR included
	err       error
}

func (c *normalizer) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			if err := c.count(c.out[:n]); err != nil {
				c.out = nil
				return 0, err
			}
			c.out = c.out[n:]
			return n, nil
		}
		if c.err == io.EOF && c.max >= 0 && c.line > c.max {
			return 0, c.tooLong()
		}
		if c.err != nil || len(p) == 0 {
			return 0, c.err
		}
		n, err := c.r.Read(p)
		if err != nil {
			c.err = err
		}
		chunk := p[:n]
		if !c.pendingCR {
			if ok, err := c.canonicalCount(chunk); ok {
				if err != nil {
					return 0, err
				}
				if n > 0 {
					return n, nil
				}
				continue
			}
		}
		c.scratch = c.normalize(c.scratch[:0], chunk)
		c.out = c.scratch
	}
}

// count tracks line lengths over normalised bytes, where every LF follows a CR.
func (c *normalizer) count(b []byte) error {
	if c.max < 0 {
		return nil
	}
	for {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			c.line += len(b)
			break
		}
		if c.line+i-1 > c.max { // the CR before LF does not count
			return c.tooLong()
		}
		c.line = 0
		b = b[i+1:]
	}
	if c.line > c.max+1 {
		return c.tooLong()
	}
	return nil
}

func (c *normalizer) tooLong() error {
	c.err = &RefusedError{Text: fmt.Sprintf("line longer than %d octets", c.max)}
	return c.err
}

// canonicalCount reports whether b is canonical (every CR in b followed by LF and every LF
// preceded by CR, within b) and, when it is, checks and counts its lines as count does, in one
// pass over b's lines (it was three counts and count's own pass). It changes nothing when
// b is not canonical (the slow path counts the rewritten bytes).
func (c *normalizer) canonicalCount(b []byte) (canonical bool, err error) {
	if len(b) == 0 {
		return true, nil
	}
	lfs, line, long := 0, c.line, false
	for at := 0; ; {
		i := bytes.IndexByte(b[at:], '\n')
		if i < 0 {
			line += len(b) - at
			break
		}
		if at+i == 0 || b[at+i-1] != '\r' {
			return false, nil // a LF with no CR before it in b
		}
		lfs++
		if line+i-1 > c.max { // the CR before LF does not count
			long = true
		}
		line = 0
		at += i + 1
	}
	if bytes.Count(b, cr) != lfs {
		return false, nil // a CR with no LF after it in b
	}
	if c.max < 0 {
		return true, nil
	}
	if long || line > c.max+1 {
		return true, c.tooLong()
	}
	c.line = line
	return true, nil
}

var cr = []byte{'\r'}

// normalize appends chunk to dst with bare CRs and LFs made CRLF.
func (c *normalizer) normalize(dst, chunk []byte) []byte {
	for _, b := range chunk {
		if c.pendingCR {
			c.pendingCR = false
			dst = append(dst, '\r', '\n')
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\r':
			c.pendingCR = true
		case '\n':
			dst = append(dst, '\r', '\n')
		default:
			dst = append(dst, b)
		}
	}
	if c.pendingCR && c.err == io.EOF {
		c.pendingCR = false
		dst = append(dst, '\r', '\n')
	}
	return dst
}
