package smtp

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"net"
	"testing"
)

// refLineLimitReader is go-smtp v0.25.1's lineLimitReader, a byte at a time.
type refLineLimitReader struct {
	R             io.Reader
	LineLimit     int
	curLineLength int
}

func (r *refLineLimitReader) Read(b []byte) (int, error) {
	if r.curLineLength > r.LineLimit && r.LineLimit > 0 {
		return 0, ErrTooLongLine
	}
	n, err := r.R.Read(b)
	if err != nil {
		return n, err
	}
	if r.LineLimit == 0 {
		return n, nil
	}
	for _, chr := range b[:n] {
		if chr == '\n' {
			r.curLineLength = 0
		}
		r.curLineLength++
		if r.curLineLength > r.LineLimit {
			return 0, ErrTooLongLine
		}
	}
	return n, nil
}

// chunked reads at most the next size bytes at a time.
type chunked struct {
	b    []byte
	rnd  *rand.Rand
	max  int
	read int
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.read == len(c.b) {
		return 0, io.EOF
	}
	n := min(len(p), 1+c.rnd.Intn(c.max), len(c.b)-c.read)
	copy(p, c.b[c.read:c.read+n])
	c.read += n
	return n, nil
}

// TestLineLimitPatch (run in this directory: go test -run TestLineLimitPatch .): the patched lineLimitReader answers every Read as the original does
// (bytes and error, and whether it keeps failing), for streams of lines around the limit read
// in chunks of any size.
func TestLineLimitPatch(t *testing.T) {
	rnd := rand.New(rand.NewSource(18))
	for i := 0; i < 2000; i++ {
		limit := rnd.Intn(20)
		var s []byte
		for j, lines := 0, rnd.Intn(12); j < lines; j++ {
			s = append(s, bytes.Repeat([]byte{'x'}, rnd.Intn(limit+3))...)
			if rnd.Intn(3) > 0 {
				s = append(s, '\r')
			}
			s = append(s, '\n')
		}
		seed := int64(i)
		maxChunk := 1 + rnd.Intn(16)
		got := &lineLimitReader{R: &chunked{b: s, rnd: rand.New(rand.NewSource(seed)), max: maxChunk}, LineLimit: limit}
		want := &refLineLimitReader{R: &chunked{b: s, rnd: rand.New(rand.NewSource(seed)), max: maxChunk}, LineLimit: limit}
		bufLen := 1 + rnd.Intn(32)
		for step := 0; ; step++ {
			gb, wb := make([]byte, bufLen), make([]byte, bufLen)
			gn, gerr := got.Read(gb)
			wn, werr := want.Read(wb)
			if gn != wn || !errors.Is(gerr, werr) || (werr == nil && !bytes.Equal(gb[:gn], wb[:wn])) {
				t.Fatalf("stream %d %q limit %d, read %d: got %d %v, want %d %v", i, s, limit, step, gn, gerr, wn, werr)
			}
			if werr == io.EOF || step > 2*len(s)+4 {
				break
			}
		}
	}
}

// TestReadBufferPatch: a connection, and the same connection after STARTTLS (init again), read
// through readBufferSize bytes of buffer, not textproto's 4 KB.
func TestReadBufferPatch(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	c := newConn(server, NewServer(nil))
	defer c.Close()
	if got := c.text.R.Size(); got != readBufferSize {
		t.Fatalf("read buffer %d bytes, want %d", got, readBufferSize)
	}
	c.init()
	if got := c.text.R.Size(); got != readBufferSize {
		t.Fatalf("after init again: read buffer %d bytes, want %d", got, readBufferSize)
	}
}
