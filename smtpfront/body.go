package smtpfront

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"
)

// crlfReader rewrites every bare LF and bare CR to CRLF. RFC 5321 and RFC
// 6152 allow CR and LF only as a pair, and a bare LF that survives into a
// plaintext package could end the DATA of a lenient next hop early (SMTP
// smuggling). go-smtp itself only ends DATA at <CRLF>.<CRLF>, so a client
// that sends bare LFs inside the body is accepted here and repaired.
//
// Nearly all mail is already canonical, so a read goes straight into the
// caller's buffer and is checked with vectorised counts; only a chunk with a
// bare CR or LF (or a CR at its end, whose LF is in the next read) is copied
// and rewritten byte by byte.
type crlfReader struct {
	r         io.Reader
	out       []byte // normalised bytes not yet returned
	scratch   []byte // out's backing array, kept for the next slow chunk
	pendingCR bool   // a CR was read and not yet written: its LF may come next
	err       error
}

func newCRLFReader(r io.Reader) *crlfReader {
	return &crlfReader{r: r}
}

func (c *crlfReader) Read(p []byte) (int, error) {
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.err != nil || len(p) == 0 {
			return 0, c.err
		}
		n, err := c.r.Read(p)
		if err != nil {
			c.err = err
		}
		chunk := p[:n]
		if !c.pendingCR && canonicalCRLF(chunk) {
			if n > 0 {
				return n, nil
			}
			continue
		}
		c.scratch = c.normalize(c.scratch[:0], chunk)
		c.out = c.scratch
	}
}

// canonicalCRLF reports whether every CR in b is followed by LF and every LF
// preceded by CR, within b.
func canonicalCRLF(b []byte) bool {
	lf := bytes.Count(b, []byte{'\n'})
	return lf == bytes.Count(b, []byte{'\r'}) && (lf == 0 || lf == bytes.Count(b, []byte("\r\n")))
}

// normalize appends chunk to dst with bare CRs and LFs made CRLF.
func (c *crlfReader) normalize(dst, chunk []byte) []byte {
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

// limitReader fails with ErrMessageTooBig once more than max bytes have
// passed, and remembers the first error it returned so the session can
// tell its own limit from whatever the spooler wrapped it in.
type limitReader struct {
	r   io.Reader
	max int64
	n   int64
	err error
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	// Read one byte past the limit so a message of exactly max bytes
	// passes and max+1 fails.
	if rest := l.max - l.n + 1; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		l.err = fmt.Errorf("failed to read message: more than %d bytes: %w", l.max, ErrMessageTooBig)
		return 0, l.err
	}
	if err != nil && err != io.EOF {
		l.err = err
	}
	return n, err
}

// deadlineReader pushes the connection's read deadline forward on every
// read, so idle time, not transfer time, is bounded by idle; total caps the
// whole DATA phase against a client that drips one byte per interval.
// go-smtp sets the deadline only when it reads a command line, which would
// otherwise give a large message the same budget as a single command.
type deadlineReader struct {
	r     io.Reader
	conn  net.Conn
	idle  time.Duration
	limit time.Time // zero: no total limit
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.conn != nil && d.idle > 0 {
		t := time.Now().Add(d.idle)
		if !d.limit.IsZero() && t.After(d.limit) {
			t = d.limit
		}
		// A failing SetReadDeadline surfaces as the read error below.
		_ = d.conn.SetReadDeadline(t)
	}
	return d.r.Read(p)
}

// bodyReaders are the 64 KB buffers a message is read through (one for the
// spool, one for the MIME check): pooled, because a fresh pair per message is
// most of what a small message allocates.
var bodyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// readHeader reads the raw header block (up to and including the blank line
// that ends it, or EOF) from br, at most max bytes, and parses it with
// go-message's textproto so a message the later stages cannot parse is
// refused before it is spooled. The raw bytes are returned unchanged for
// spooling.
func readHeader(br *bufio.Reader, max int) ([]byte, textproto.Header, error) {
	var raw []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(raw)+len(line) > max {
			return nil, textproto.Header{}, fmt.Errorf("failed to read header: more than %d bytes: %w", max, ErrMessageTooBig)
		}
		raw = append(raw, line...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, textproto.Header{}, fmt.Errorf("failed to read header: %w", err)
		}
		if len(line) == 2 && line[0] == '\r' {
			break
		}
	}
	if bytes.IndexByte(raw, 0) >= 0 {
		return nil, textproto.Header{}, &messageError{text: "message header contains NUL"}
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return nil, textproto.Header{}, &messageError{text: "malformed message header", err: err}
	}
	if h.Len() == 0 {
		return nil, textproto.Header{}, &messageError{text: "message has no header"}
	}
	return raw, h, nil
}
