package queue

import (
	"bytes"
	"io"
	"os"
)

// WireBody is implemented by the body the queue hands a [Deliverer] for a package whose
// shared part ([SharedBody]) the spool found, as it wrote the part, already in the form SMTP
// DATA sends it: every line ended by CRLF (no bare CR or LF), no line begun by '.', the last
// line ended too. A Deliverer may then dot-stuff only the package's own head and send the tail
// from the spool file as it is (sendfile), instead of reading the whole body through Read.
type WireBody interface {
	io.Reader
	// WireTail returns the package's own head and its tail, which follows the head: ok is false
	// when the package has no tail in wire form (or it is not in a file the kernel can send
	// from), and the body is then read through Read. A caller that takes the tail reads the head
	// and the tail instead of the body, never both.
	WireTail() (head io.Reader, tail WireTail, ok bool)
}

// WireTail is Len bytes of File from Off, in SMTP DATA form as they are (see [WireBody]); Len
// is at least 2 (the last line end). File is the spool file the queue opened for this
// delivery: the Deliverer may move its offset (sendfile reads from it) and does not close it.
type WireTail struct {
	File     *os.File
	Off, Len int64
}

// packageBody is a spooled package as the queue hands it to the Deliverer: its head (the
// package's own bytes) and, when it shares one, the shared part.
type packageBody struct {
	io.Reader                   // head then shared part
	head      *io.SectionReader // the package's own bytes
	file      *os.File          // the spool file, when it is an *os.File
	shared    *segment
}

func (b *packageBody) WireTail() (io.Reader, WireTail, bool) {
	if b.file == nil || b.shared == nil || !b.shared.Wire || b.shared.Len < 2 {
		return nil, WireTail{}, false
	}
	return b.head, WireTail{File: b.file, Off: b.shared.Off, Len: b.shared.Len}, true
}

// wireCheck passes what is written through to w and finds out whether all of it, taken as one
// part of a message that begins at the start of a line, is in SMTP DATA form as it stands (see
// WireBody): lines ended by CRLF only, none begun by '.', and a line end last. The spool runs
// every shared part it writes through one, once per message, so that delivery does not have to
// stuff it once per package.
type wireCheck struct {
	w        io.Writer
	n        int64 // bytes seen
	last     byte  // the last of them
	crs, lfs int64
	bad      bool
}

func (c *wireCheck) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.scan(p[:n])
	return n, err
}

// scan takes the next bytes of the part.
func (c *wireCheck) scan(p []byte) {
	for len(p) > 0 && !c.bad {
		if (c.n == 0 || c.last == '\n') && p[0] == '.' {
			// A line begun by '.': DATA would need it stuffed.
			c.bad = true
			return
		}
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			c.crs += int64(bytes.Count(p, cr))
			c.n += int64(len(p))
			c.last = p[len(p)-1]
			return
		}
		prev := c.last
		if i > 0 {
			prev = p[i-1]
		}
		if prev != '\r' || c.n+int64(i) == 0 {
			// A bare LF (a part that begins with LF has no CR before it either).
			c.bad = true
			return
		}
		c.crs += int64(bytes.Count(p[:i], cr))
		c.lfs++
		c.n += int64(i) + 1
		c.last = '\n'
		p = p[i+1:]
	}
}

// ok reports whether everything written was in wire form. Each LF follows a CR (scan), so
// as many CRs as LFs means no CR stands alone.
func (c *wireCheck) ok() bool {
	return !c.bad && c.n >= 2 && c.last == '\n' && c.crs == c.lfs
}

var cr = []byte{'\r'}
