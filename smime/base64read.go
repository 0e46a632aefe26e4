package smime

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
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
	n := 3 * q
	if !decodeGroups(dst[:n], b.buf[b.off:b.off+4*q]) {
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

// base64Pair maps two characters, the first in the low byte, to the 12 bits they encode, or to
// 0xffff when either is outside the base64 alphabet (padding, white space, anything else). Of
// its 128 KB only the 64 rows of 64 valid pairs are read, about 12 KB.
var base64Pair = func() *[1 << 16]uint16 {
	var one [256]uint16
	for i := range one {
		one[i] = 0xffff
	}
	for i := range len(base64Alphabet) {
		one[base64Alphabet[i]] = uint16(i)
	}
	t := new([1 << 16]uint16)
	for i := range t {
		a, b := one[i&0xff], one[i>>8]
		t[i] = 0xffff
		if a != 0xffff && b != 0xffff {
			t[i] = a<<6 | b
		}
	}
	return t
}()

// decodeGroups decodes src, whole groups of 4 characters, into dst (3 bytes a group) and
// reports whether every character was in the alphabet: exactly when base64.StdEncoding.Decode
// would decode 3 bytes a group without error, and then into the same bytes. It looks up two
// characters at a time, 8 a step, about 1.7 times as fast as Decode's one at a time; what it
// wrote before a character outside the alphabet is of no use (the caller hands over).
func decodeGroups(dst, src []byte) bool {
	t := base64Pair
	for len(src) >= 8 && len(dst) >= 8 {
		a, b := t[binary.LittleEndian.Uint16(src[0:2])], t[binary.LittleEndian.Uint16(src[2:4])]
		c, d := t[binary.LittleEndian.Uint16(src[4:6])], t[binary.LittleEndian.Uint16(src[6:8])]
		if (a|b|c|d)&0xf000 != 0 {
			return false
		}
		binary.BigEndian.PutUint64(dst, uint64(a)<<52|uint64(b)<<40|uint64(c)<<28|uint64(d)<<16)
		src, dst = src[8:], dst[6:]
	}
	for len(src) >= 4 && len(dst) >= 3 {
		a, b := t[binary.LittleEndian.Uint16(src[0:2])], t[binary.LittleEndian.Uint16(src[2:4])]
		if (a|b)&0xf000 != 0 {
			return false
		}
		v := uint32(a)<<12 | uint32(b)
		dst[0], dst[1], dst[2] = byte(v>>16), byte(v>>8), byte(v)
		src, dst = src[4:], dst[3:]
	}
	return len(src) == 0
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
