package smime

import (
	"bytes"
	"encoding/base64"
	"io"
	"sync"
)

// base64Reader decodes base64 text as base64.NewDecoder(base64.StdEncoding, &base64Filter{r})
// does, several times faster on what clients send (lines of base64 characters ending in CRLF
// or LF): line ends are cut out of a large block at a time and the rest decoded with one
// Decode call per read, where the filter and the decoder looked at every byte in 1 KB steps.
//
// It only ever decodes whole groups of 4 characters none of which is padding: a block that
// does not decode to 3 bytes per group (white space inside a line, a CR not before a LF,
// padding, a character outside the alphabet) and the last group or two of the text are handed,
// with everything after them, to the filter and decoder it replaces. What that decoder makes
// of a group does not depend on the groups before it, so the bytes are the same, with one
// exception no encoder produces: padding followed by more base64 characters, which that
// decoder itself decodes differently depending on the sizes it happens to read in.
type base64Reader struct {
	r    io.Reader
	buf  []byte // buf[off:np]: base64 characters, line ends removed, not yet decoded
	off  int
	np   int
	rerr error  // the error r returned; nothing more is read once it is set
	out  []byte // decoded bytes not yet returned (a Read of fewer than 3 bytes)
	one  [3]byte
	slow io.Reader // the filter and decoder, once handed over to
}

// base64Block is how much of the text base64Reader reads and decodes at a time.
const base64Block = 64 << 10

var base64Blocks = sync.Pool{New: func() any { b := make([]byte, base64Block); return &b }}

func newBase64Reader(r io.Reader) io.Reader {
	return &base64Reader{r: r}
}

// slowBase64 is the decoder base64Reader stands for.
func slowBase64(r io.Reader) io.Reader {
	return base64.NewDecoder(base64.StdEncoding, &base64Filter{r: r})
}

func (b *base64Reader) Read(p []byte) (int, error) {
	if b.slow != nil {
		return b.slow.Read(p)
	}
	if len(b.out) > 0 {
		n := copy(p, b.out)
		b.out = b.out[n:]
		return n, nil
	}
	if len(p) == 0 {
		return 0, nil
	}
	for b.np-b.off < 4 {
		if b.rerr != nil {
			// The last characters (padding, or one or two the filter pads, or the error
			// after them) are the slow decoder's.
			return b.handOver(p)
		}
		b.fill()
	}
	q := (b.np - b.off) / 4
	dst := p
	if len(p) < 3 {
		q, dst = 1, b.one[:]
	}
	q = min(q, len(dst)/3)
	n, err := base64.StdEncoding.Decode(dst, b.buf[b.off:b.off+4*q])
	if err != nil || n != 3*q {
		return b.handOver(p)
	}
	b.off += 4 * q
	if len(p) < 3 {
		k := copy(p, b.one[:])
		b.out = b.one[k:]
		return k, nil
	}
	return n, nil
}

// fill reads the next block of r after the characters not yet decoded, and cuts the line ends
// out of it: every LF and a CR just before one (or at the end of what was read: the base64
// filter drops a CR wherever it is).
func (b *base64Reader) fill() {
	if b.buf == nil {
		b.buf = *base64Blocks.Get().(*[]byte)
	}
	b.np = copy(b.buf, b.buf[b.off:b.np])
	b.off = 0
	n, err := b.r.Read(b.buf[b.np:])
	if err != nil {
		b.rerr = err
	}
	src, end, dst := b.np, b.np+n, b.np
	for src < end {
		i := bytes.IndexByte(b.buf[src:end], '\n')
		next := src + i + 1
		if i < 0 {
			i, next = end-src, end
		}
		if i > 0 && b.buf[src+i-1] == '\r' {
			i--
		}
		dst += copy(b.buf[dst:], b.buf[src:src+i])
		src = next
	}
	b.np = dst
}

// handOver gives the characters not yet decoded, and the rest of r, to the filter and decoder
// that base64Reader stands for.
func (b *base64Reader) handOver(p []byte) (int, error) {
	rest := b.r
	if b.rerr != nil {
		rest = errReader{b.rerr}
	}
	pending := []byte(nil)
	if b.np > b.off {
		pending = append(pending, b.buf[b.off:b.np]...)
	}
	if buf := b.buf; buf != nil {
		b.buf = nil
		base64Blocks.Put(&buf)
	}
	b.slow = slowBase64(io.MultiReader(bytes.NewReader(pending), rest))
	return b.slow.Read(p)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
