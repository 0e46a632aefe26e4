package delivery

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"sync"
)

var (
	crlf = []byte("\r\n")
	cr   = crlf[:1]
)

// dotStuffer writes a message body in SMTP DATA form (RFC 5321 section 4.5.2) a line at a time
// instead of byte by byte as net/textproto's DotWriter does: a line starting with '.' gets
// another '.', and a bare LF becomes CRLF. What the body ends with (its last line end, or a
// '\r' that could have begun one) is held back in Held, for the caller to pass through
// go-smtp's own DotWriter: that writer then ends the data exactly as it would have had it seen
// the whole body (".\r\n" after a line end, "\r\n.\r\n" after a partial line).
type dotStuffer struct {
	bw        *bufio.Writer
	buf       []byte // ReadFrom's
	lineStart bool   // the next byte begins a line
	held      []byte // nil, crlf (a line end not written yet) or cr (a '\r' that may begin one)
}

// stuffers keeps the two 64 KB buffers of a transaction for the next: made per package they
// were most of what delivery allocated.
var stuffers = sync.Pool{New: func() any {
	return &dotStuffer{bw: bufio.NewWriterSize(nil, 64<<10), buf: make([]byte, 64<<10)}
}}

func newDotStuffer(w io.Writer) *dotStuffer {
	d := stuffers.Get().(*dotStuffer)
	d.bw.Reset(w)
	d.lineStart, d.held = true, nil
	return d
}

// release gives the buffers back; d is not used after.
func (d *dotStuffer) release() {
	d.bw.Reset(nil)
	stuffers.Put(d)
}

// Held is the tail of the body not written yet: nil, "\r\n" or "\r".
func (d *dotStuffer) Held() []byte { return d.held }

// dataEnd is what ends the data after a body whose held tail (Held) is held: that tail
// through net/textproto's DotWriter (go-smtp's), closed, so the data ends exactly as go-smtp
// would have ended it.
func dataEnd(held []byte) []byte {
	var b bytes.Buffer
	bw := bufio.NewWriterSize(&b, 16)
	w := textproto.NewWriter(bw).DotWriter()
	w.Write(held)
	w.Close()
	return b.Bytes()
}

// writeHeld writes the held tail, as when more follows: for bytes that follow as they are,
// written by the caller after Flush.
func (d *dotStuffer) writeHeld() {
	if d.held != nil {
		d.bw.Write(d.held)
		d.lineStart = len(d.held) == 2
		d.held = nil
	}
}

// ReadFrom copies r in DATA form, reading it in large blocks.
func (d *dotStuffer) ReadFrom(r io.Reader) (int64, error) {
	var n int64
	for {
		m, err := r.Read(d.buf)
		if m > 0 {
			n += int64(m)
			d.write(d.buf[:m])
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// Write is ReadFrom for one block.
func (d *dotStuffer) Write(p []byte) (int, error) {
	d.write(p)
	return len(p), nil
}

// Flush writes out everything but the held tail.
func (d *dotStuffer) Flush() error { return d.bw.Flush() }

// write stuffs p; errors stay in the bufio.Writer and come out of Flush.
func (d *dotStuffer) write(p []byte) {
	for len(p) > 0 {
		if d.held != nil {
			if len(d.held) == 1 && p[0] == '\n' {
				d.held = crlf
				p = p[1:]
				continue
			}
			// More follows: a held line end ends a line, a held '\r' was data.
			d.bw.Write(d.held)
			d.lineStart = len(d.held) == 2
			d.held = nil
		}
		if d.lineStart && p[0] == '.' {
			d.bw.WriteByte('.')
		}
		d.lineStart = false
		// The lines from here that go out as they are (CRLF-terminated, the next one not
		// starting with '.') are written in one piece, up to their last line end, which is
		// held like any other: most of a base64 body is one such span.
		if j := cleanSpan(p); j > 0 {
			d.bw.Write(p[:j-2])
			d.held = crlf
			p = p[j:]
			continue
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if p[len(p)-1] == '\r' {
				d.bw.Write(p[:len(p)-1])
				d.held = cr
			} else {
				d.bw.Write(p)
			}
			return
		}
		line := p[:i]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		d.bw.Write(line)
		d.held = crlf
		p = p[i+1:]
	}
}

// cleanSpan returns the length of the longest prefix of p made of whole lines that need no
// change in DATA: each ends in CRLF (no bare LF) and each but the first is not started by a
// '.' (the caller has stuffed the first). 0 when the first line is not such a line.
func cleanSpan(p []byte) int {
	j := 0
	for {
		i := bytes.IndexByte(p[j:], '\n')
		if i < 0 {
			return j
		}
		e := j + i
		if e == j || p[e-1] != '\r' {
			// A bare LF (or an empty line without CR): the line loop converts it.
			return j
		}
		j = e + 1
		if j < len(p) && p[j] == '.' {
			return j
		}
	}
}
