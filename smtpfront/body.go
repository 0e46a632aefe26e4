package smtpfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-message/textproto"

	"appliance/smime"
)

// newCRLFReader rewrites every bare LF and bare CR to CRLF, with no bound on
// line length: smime's normaliser, the one `seal` runs too (see
// smime.NewNormalizer). go-smtp itself only ends DATA at <CRLF>.<CRLF>, so a
// client that sends bare LFs inside the body is accepted here and repaired.
func newCRLFReader(r io.Reader) io.Reader {
	return smime.NewNormalizer(r, smime.Limits{MaxLineLength: -1})
}

// limits are the normalisation limits of the session's options.
func (o *Options) limits() smime.Limits {
	return smime.Limits{MaxLineLength: o.MaxLineLength, MaxHeaderBytes: o.MaxHeaderBytes, MaxHeaderFields: o.MaxHeaderFields}
}

// frontError maps a refusal of the shared normalisation to the session's
// errors: a size limit to ErrMessageTooBig, anything else to a malformed
// message with the refusal's text.
func frontError(err error) error {
	var re *smime.RefusedError
	if !errors.As(err, &re) {
		return err
	}
	if re.TooBig {
		return fmt.Errorf("failed to read message: %s: %w", re.Text, ErrMessageTooBig)
	}
	return &messageError{text: re.Text, err: re.Err}
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
// that ends it, or EOF) from br, at most lim.MaxHeaderBytes, and checks it
// with smime.CheckHeader, as `seal` does, so a message the later stages
// cannot parse is refused before it is spooled. The raw bytes are returned
// unchanged for spooling.
func readHeader(br *bufio.Reader, lim smime.Limits) ([]byte, textproto.Header, error) {
	raw, err := smime.ReadHeaderBlock(br, lim)
	if err != nil {
		var re *smime.RefusedError
		if errors.As(err, &re) && re.TooBig {
			return nil, textproto.Header{}, fmt.Errorf("failed to read header: %s: %w", re.Text, ErrMessageTooBig)
		}
		return nil, textproto.Header{}, fmt.Errorf("failed to read header: %w", err)
	}
	h, err := smime.CheckHeader(raw, lim)
	if err != nil {
		return nil, textproto.Header{}, frontError(err)
	}
	return raw, h, nil
}
