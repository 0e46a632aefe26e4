package smime

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

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
	if err := writePackageHeader(bw, outer, t); err != nil {
		return err
	}
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

func writePackageHeader(bw *bufio.Writer, outer textproto.Header, smimeType string) error {
	if err := writeOuter(bw, outer); err != nil {
		return err
	}
	bw.WriteString("MIME-Version: 1.0\r\n" +
		"Content-Type: application/pkcs7-mime; smime-type=" + smimeType + ";\r\n name=smime.p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=smime.p7m\r\n" +
		"\r\n")
	return nil
}

// SharedBase64 is the common end of several packages' DER (the encrypted content of one
// message, see cms.Encoded.Shared) with its base64 lines made once and reused. Where the lines
// of the common part start depends only on the length of the package's own DER modulo the 57
// bytes of one line, so each such phase is encoded once; packages of one message usually have
// RecipientInfos of one length and so share a single phase. Safe for concurrent use; it holds
// the base64 of each phase used until it is dropped.
type SharedBase64 struct {
	tail [][]byte
	size int

	mu     sync.Mutex
	phases map[int][]byte // base64 lines of tail[off:], by off
	tails  map[int]*Base64Tail
}

// NewSharedBase64 returns the cache for tail, which must not change while it is in use.
func NewSharedBase64(tail [][]byte) *SharedBase64 {
	n := 0
	for _, p := range tail {
		n += len(p)
	}
	return &SharedBase64{tail: tail, size: n, phases: map[int][]byte{}}
}

// linesFrom returns the base64 lines of the tail from byte off on.
func (s *SharedBase64) linesFrom(off int) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.phases[off]; ok {
		return b, nil
	}
	n := base64.StdEncoding.EncodedLen(s.size - off)
	buf := bytes.NewBuffer(Buffer(n + n/LineLength*2 + 2))
	enc := NewBase64Writer(buf)
	if err := writeRange(enc, s.tail, off, s.size); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	s.phases[off] = buf.Bytes()
	return buf.Bytes(), nil
}

// writeRange writes bytes [from, to) of the concatenation of parts.
func writeRange(w io.Writer, parts [][]byte, from, to int) error {
	pos := 0
	for _, p := range parts {
		lo, hi := max(from-pos, 0), min(to-pos, len(p))
		pos += len(p)
		if lo >= hi {
			continue
		}
		if _, err := w.Write(p[lo:hi]); err != nil {
			return err
		}
	}
	return nil
}

// WritePackageShared writes what [WritePackage] writes for the DER own followed by shared's
// tail, encoding only own and the start of the tail up to a line boundary, and copying the
// tail's cached lines from there.
func WritePackageShared(w io.Writer, outer textproto.Header, smimeType string, own [][]byte, shared *SharedBase64) error {
	if err := WritePackageHead(w, outer, smimeType, own, shared); err != nil {
		return err
	}
	if t := shared.Tail(own...); t != nil {
		if _, err := t.WriteTo(w); err != nil {
			return fmt.Errorf("failed to write package: %w", err)
		}
	}
	return nil
}

// WritePackageHead writes the part of what [WritePackageShared] writes that is the package's
// own: the header and the base64 lines up to where shared.Tail(own...) begins (everything when
// that is nil). The head followed by the tail is the whole package, so the tail, the same for
// every package of its phase, can be stored once for all of them.
func WritePackageHead(w io.Writer, outer textproto.Header, smimeType string, own [][]byte, shared *SharedBase64) error {
	t, ok := canonicalType(smimeType)
	if !ok {
		return fmt.Errorf("failed to write package: %w: %q", ErrUnknownSMIMEType, smimeType)
	}
	bw := headWriters.Get().(*bufio.Writer)
	bw.Reset(w)
	defer func() {
		bw.Reset(nil)
		headWriters.Put(bw)
	}()
	if err := writePackageHeader(bw, outer, t); err != nil {
		return err
	}
	if err := shared.WriteHead(bw, own...); err != nil {
		return fmt.Errorf("failed to write package body: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("failed to write package: %w", err)
	}
	return nil
}

// headWriters are WritePackageHead's buffers, one per package written otherwise.
var headWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 16<<10) }}

// phase is where in the tail the cached lines start after the DER own: the first tail byte
// that begins a base64 line, or the tail's size when none does.
func (s *SharedBase64) phase(own [][]byte) int {
	ownLen := 0
	for _, p := range own {
		ownLen += len(p)
	}
	return min((lineInput-ownLen%lineInput)%lineInput, s.size)
}

// WriteBase64 writes the base64 lines of the DER own followed by the tail, as
// [NewBase64Writer] would: own and the start of the tail up to a line boundary are encoded,
// the rest are the cached lines of that phase.
func (s *SharedBase64) WriteBase64(w io.Writer, own ...[]byte) error {
	if err := s.WriteHead(w, own...); err != nil {
		return err
	}
	if t := s.Tail(own...); t != nil {
		_, err := t.WriteTo(w)
		return err
	}
	return nil
}

// WriteHead writes the base64 lines of own and of the tail's first bytes up to the first line
// boundary: what [SharedBase64.WriteBase64] writes before the cached lines of
// [SharedBase64.Tail].
func (s *SharedBase64) WriteHead(w io.Writer, own ...[]byte) error {
	off := s.phase(own)
	enc := NewBase64Writer(w)
	for _, p := range own {
		if _, err := enc.Write(p); err != nil {
			return err
		}
	}
	if err := writeRange(enc, s.tail, 0, off); err != nil {
		return err
	}
	// own and the tail's first off bytes end on a line boundary (or are everything), so Close
	// adds no partial line before the cached ones.
	return enc.Close()
}

// Tail returns the cached base64 lines that follow [SharedBase64.WriteHead]'s for the DER own,
// or nil when the tail does not reach a line boundary (WriteHead then wrote all of it). Every
// package of one phase gets the same *Base64Tail, so a writer can tell shared tails apart by
// pointer.
func (s *SharedBase64) Tail(own ...[]byte) *Base64Tail {
	off := s.phase(own)
	if off >= s.size {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tails == nil {
		s.tails = map[int]*Base64Tail{}
	}
	t := s.tails[off]
	if t == nil {
		t = &Base64Tail{s: s, off: off}
		s.tails[off] = t
	}
	return t
}

// Base64Tail is the base64 lines of a [SharedBase64] from one phase on, the part that packages
// of that phase share byte for byte.
type Base64Tail struct {
	s   *SharedBase64
	off int
}

// StreamTo writes what [Base64Tail.WriteTo] writes, for a caller that writes the lines once
// (the spool): lines already made are written as they are, others are encoded a block at a time
// straight into w and not kept, so a 10 MB tail is never held whole as base64 for it.
func (t *Base64Tail) StreamTo(w io.Writer) (int64, error) {
	t.s.mu.Lock()
	lines, ok := t.s.phases[t.off]
	t.s.mu.Unlock()
	if ok {
		n, err := w.Write(lines)
		return int64(n), err
	}
	cw := &countingWriter{w: w}
	enc := NewBase64Writer(cw)
	if err := writeRange(enc, t.s.tail, t.off, t.s.size); err != nil {
		enc.Close()
		return cw.n, err
	}
	err := enc.Close()
	return cw.n, err
}

// WriteTo writes the lines, encoding them on first use.
func (t *Base64Tail) WriteTo(w io.Writer) (int64, error) {
	lines, err := t.s.linesFrom(t.off)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(lines)
	return int64(n), err
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
//
// Every package of a message runs its whole CMS through here, so it encodes whole lines at a
// time (57 input bytes make one 76-character line) into a block that goes to w in one call,
// rather than through base64.NewEncoder and a writer that cuts its output into lines.
func NewBase64Writer(w io.Writer) io.WriteCloser {
	return &base64Writer{w: w}
}

const (
	lineInput  = LineLength / 4 * 3 // input bytes per full line
	lineOutput = LineLength + 2     // a full line with its CRLF
	blockLines = 512                // lines per write to w (about 40 KB)
)

type base64Writer struct {
	w       io.Writer
	partial [lineInput]byte // input of the line not yet complete
	n       int             // bytes in partial
	out     []byte
	err     error
}

func (b *base64Writer) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.out == nil {
		b.out = (*blocks.Get().(*[]byte))[:0]
	}
	total := len(p)
	if b.n > 0 {
		k := copy(b.partial[b.n:], p)
		b.n += k
		p = p[k:]
		if b.n < lineInput {
			return total, nil
		}
		if err := b.line(b.partial[:]); err != nil {
			return 0, err
		}
		b.n = 0
	}
	for len(p) >= lineInput {
		if err := b.line(p[:lineInput]); err != nil {
			return total - len(p), err
		}
		p = p[lineInput:]
	}
	b.n = copy(b.partial[:], p)
	return total, nil
}

// line encodes one full line of input into out, flushing out first when it is full.
func (b *base64Writer) line(in []byte) error {
	if len(b.out)+lineOutput > cap(b.out) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	o := len(b.out)
	b.out = b.out[:o+lineOutput]
	encodeLine(b.out[o:o+LineLength], in)
	b.out[o+LineLength], b.out[o+LineLength+1] = '\r', '\n'
	return nil
}

// base64Alphabet is base64.StdEncoding's, for the pair tables that encode (base64Pairs) and
// decode (base64Pair) two characters at a time.
const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// base64Pairs maps 12 bits to their two base64 characters, the first in the low byte.
var base64Pairs = func() (t [4096]uint16) {
	for i := range t {
		t[i] = uint16(base64Alphabet[i>>6]) | uint16(base64Alphabet[i&63])<<8
	}
	return t
}()

// encodeLine writes the 76 base64 characters of the 57 bytes of src into dst, as
// base64.StdEncoding.Encode does, about 3x faster: 6 bytes at a time make 8 characters from four
// lookups of a character pair (every package's encrypted content is encoded through here).
func encodeLine(dst, src []byte) {
	_, _ = dst[LineLength-1], src[lineInput-1]
	for i := range lineInput / 6 {
		s := src[i*6 : i*6+6 : i*6+6]
		v := uint64(s[0])<<40 | uint64(s[1])<<32 | uint64(s[2])<<24 | uint64(s[3])<<16 | uint64(s[4])<<8 | uint64(s[5])
		binary.LittleEndian.PutUint64(dst[i*8:i*8+8], uint64(base64Pairs[v>>36&0xfff])|uint64(base64Pairs[v>>24&0xfff])<<16|
			uint64(base64Pairs[v>>12&0xfff])<<32|uint64(base64Pairs[v&0xfff])<<48)
	}
	s := src[lineInput-3 : lineInput : lineInput]
	v := uint(s[0])<<16 | uint(s[1])<<8 | uint(s[2])
	binary.LittleEndian.PutUint32(dst[LineLength-4:LineLength], uint32(base64Pairs[v>>12])|uint32(base64Pairs[v&0xfff])<<16)
}

func (b *base64Writer) flush() error {
	if len(b.out) == 0 {
		return nil
	}
	_, err := b.w.Write(b.out)
	b.out = b.out[:0]
	if err != nil {
		b.err = err
	}
	return err
}

// Close writes the last, possibly short, line and gives the block back for the next writer.
func (b *base64Writer) Close() error {
	if b.err != nil {
		return b.err
	}
	if b.n > 0 {
		if b.out == nil {
			b.out = (*blocks.Get().(*[]byte))[:0]
		}
		if len(b.out)+lineOutput > cap(b.out) {
			if err := b.flush(); err != nil {
				return err
			}
		}
		o := len(b.out)
		m := base64.StdEncoding.EncodedLen(b.n)
		b.out = b.out[:o+m]
		base64.StdEncoding.Encode(b.out[o:o+m], b.partial[:b.n])
		b.out = append(b.out, crlf...)
		b.n = 0
	}
	err := b.flush()
	if b.out != nil {
		out := b.out
		blocks.Put(&out)
		b.out = nil
	}
	return err
}

// blocks are base64Writer's output blocks. Every package written encodes through one, most of
// them only a few hundred bytes of their own (see SharedBase64), so a block made per writer would
// be most of the garbage of writing many packages.
var blocks = sync.Pool{New: func() any {
	b := make([]byte, 0, blockLines*lineOutput)
	return &b
}}

var crlf = []byte("\r\n")
