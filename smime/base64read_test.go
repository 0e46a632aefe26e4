package smime

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
)

// readAs reads the whole of r the way a caller named by how does: "buffer" as decode does (a
// bytes.Buffer of the final size), "all" with io.ReadAll, or in reads of a fixed small size.
func readAs(t *testing.T, r io.Reader, how string, size int) ([]byte, error) {
	t.Helper()
	switch how {
	case "buffer":
		buf := bytes.NewBuffer(make([]byte, 0, size/4*3+bytes.MinRead))
		_, err := buf.ReadFrom(r)
		return buf.Bytes(), err
	case "all":
		return io.ReadAll(r)
	}
	var n int
	fmt.Sscanf(how, "step%d", &n)
	var out []byte
	p := make([]byte, n)
	for i := 0; i < 1<<24; i++ {
		k, err := r.Read(p)
		out = append(out, p[:k]...)
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, err
		}
	}
	t.Fatal("reader never ends")
	return nil, nil
}

// comparable reports how many decoded bytes the two decoders must agree on: all of them, or,
// for padding followed by more characters (which the old decoder reads differently depending
// on its read sizes), those of the groups before the padded one (where one stops before that,
// the other must stop there too).
func comparable(text []byte) (all bool, prefix int) {
	var f []byte
	for _, c := range text {
		if c != ' ' && c != '\t' && c != '\r' && c != '\n' {
			f = append(f, c)
		}
	}
	i := bytes.IndexByte(f, '=')
	if i < 0 || len(f) <= (i/4+1)*4 {
		return true, 0
	}
	return false, i / 4 * 3
}

var allReads = []string{"buffer", "all", "step1", "step2", "step3", "step5", "step64", "step1000"}

// largeReads are the ways a text over 16 KB is read: the reads of a few bytes, which the short
// texts try in every phase, would cost minutes under the race detector there.
var largeReads = []string{"buffer", "all", "step64", "step1000"}

// checkSame compares the two decoders on text, read in each way of reads (allReads if none).
func checkSame(t *testing.T, name string, text []byte, reads ...string) (all bool) {
	t.Helper()
	all, prefix := comparable(text)
	if reads == nil {
		reads = allReads
		if len(text) > 16<<10 {
			reads = largeReads
		}
	}
	for _, how := range reads {
		want, werr := readAs(t, slowBase64(bufio.NewReader(bytes.NewReader(text))), how, len(text))
		got, gerr := readAs(t, newBase64Reader(bufio.NewReader(bytes.NewReader(text))), how, len(text))
		if !all {
			k := min(len(want), prefix)
			if min(len(got), prefix) != k || !bytes.Equal(got[:k], want[:k]) {
				t.Fatalf("%s, %s: the groups before the padding differ", name, how)
			}
			continue
		}
		if !bytes.Equal(got, want) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%s, read %s: got %d bytes (err %v), the filter and decoder %d (err %v); first difference at %d",
				name, how, len(got), gerr, len(want), werr, firstDiff(got, want))
		}
	}
	return all
}

// lines encodes data in base64 lines of width characters ending in eol.
func lines(data []byte, width int, eol string) []byte {
	s := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(s) > 0 {
		n := min(width, len(s))
		b.WriteString(s[:n])
		b.WriteString(eol)
		s = s[n:]
	}
	return b.Bytes()
}

// TestBase64ReaderSame: the fast decoder gives the bytes (and the success) of the base64 filter
// and decoder it replaces, on lines of every width up to 20 and of the widths encoders write,
// data lengths in every phase of padding, CRLF, LF and CR line ends, long texts crossing its blocks, and the
// same texts with white space, bare CRs, padding, other characters inserted, padding removed
// or the text cut anywhere.
func TestBase64ReaderSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 2026))
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	eols := []string{"\r\n", "\n", "\r", "", " \r\n", "\r\r\n"}
	n := 0
	// Every width to 20 (each phase of a line against the groups of 4, several times), then the
	// widths encoders write and those around them.
	widths := []int{}
	for w := 1; w <= 20; w++ {
		widths = append(widths, w)
	}
	widths = append(widths, 31, 32, 33, 57, 63, 64, 65, 72, 75, 76, 77, 99, 100)
	for _, width := range widths {
		for _, size := range []int{0, 1, 2, 3, 4, 56, 57, 58, 100, 199, 200} {
			for _, eol := range eols {
				checkSame(t, fmt.Sprintf("width %d, %d bytes, eol %q", width, size, eol), lines(data[:size], width, eol))
				n++
			}
		}
	}
	for _, width := range []int{4, 63, 64, 72, 76, 77, 998, 70000} {
		for _, size := range []int{64 << 10, 64<<10 + 1, 200<<10 + 2} {
			checkSame(t, fmt.Sprintf("width %d, %d bytes", width, size), lines(data[:size], width, "\r\n"))
			n++
		}
	}
	// Damage: one change at a random place, in texts small and large.
	junk := []string{" ", "\t", "\r", "\n", "=", "==", "!", ".", "-", "\x00", "\xff", "A", "\r\n\r\n"}
	partial := 0
	for i := range 2000 {
		size := rng.IntN(300)
		if i%50 == 0 {
			size = 64<<10 + rng.IntN(200<<10)
		}
		text := lines(data[:size], 1+rng.IntN(100), eols[rng.IntN(3)])
		at := rng.IntN(len(text) + 1)
		var damaged []byte
		switch rng.IntN(3) {
		case 0:
			damaged = append(append(append([]byte(nil), text[:at]...), junk[rng.IntN(len(junk))]...), text[at:]...)
		case 1:
			damaged = text[:at]
		default:
			damaged = bytes.TrimRight(text, "=\r\n")
		}
		if !checkSame(t, fmt.Sprintf("damaged %d (%d bytes at %d)", i, size, at), damaged) {
			partial++
		}
		n++
	}
	// Every cut and every inserted character of one short text.
	short := lines(data[:42], 16, "\r\n") // no padding of its own
	for at := 0; at <= len(short); at++ {
		checkSame(t, fmt.Sprintf("cut at %d", at), short[:at])
		for c := range 256 {
			if !checkSame(t, fmt.Sprintf("%q at %d", byte(c), at), append(append(append([]byte(nil), short[:at]...), byte(c)), short[at:]...), "buffer", "step1", "step5") {
				partial++
			}
			n++
		}
	}
	t.Logf("%d texts, %d of them compared up to padding followed by more", n, partial)
}

// TestDecodeGroupsEveryPair: every pair of bytes, in each half of a group and in each half of
// an 8-character step, decodes as base64.StdEncoding.Decode decodes it, and is refused exactly
// where Decode would not give 3 bytes a group.
func TestDecodeGroupsEveryPair(t *testing.T) {
	const fill = "QUJD" // "ABC"
	for v := range 1 << 16 {
		pair := []byte{byte(v), byte(v >> 8)}
		for _, at := range []int{0, 2, 4, 6, 8, 10} {
			src := []byte(fill + fill + fill)
			copy(src[at:], pair)
			want := make([]byte, 9)
			n, err := base64.StdEncoding.Decode(want, src)
			wantOK := err == nil && n == 9
			got := make([]byte, 9)
			if ok := decodeGroups(got, src); ok != wantOK || (ok && !bytes.Equal(got, want)) {
				t.Fatalf("%q: decodeGroups %v %x, Decode %d bytes %v %x", src, ok, got, n, err, want[:n])
			}
		}
	}
}

// TestBase64ReaderReadError: an error from the reader under it comes out after the bytes
// decoded before it, as from the filter and decoder.
func TestBase64ReaderReadError(t *testing.T) {
	text := lines(bytes.Repeat([]byte("appliance"), 20000), 76, "\r\n")
	for _, at := range []int{0, 1, 77, 78, 79, 70000, len(text) - 1} {
		boom := fmt.Errorf("disk gone at %d", at)
		mk := func() io.Reader { return io.MultiReader(bytes.NewReader(text[:at]), errReader{boom}) }
		want, werr := io.ReadAll(slowBase64(mk()))
		got, gerr := io.ReadAll(newBase64Reader(mk()))
		if !bytes.Equal(got, want) || gerr != boom || werr != boom {
			t.Fatalf("at %d: got %d bytes, %v; want %d bytes, %v", at, len(got), gerr, len(want), werr)
		}
	}
}

// TestBase64ReaderFast: the common form (76-column CRLF lines) is decoded by the fast path up
// to its last group, not handed over to the filter and decoder at the first block.
func TestBase64ReaderFast(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 100000)
	for _, eol := range []string{"\r\n", "\n"} {
		r := newBase64Reader(bytes.NewReader(lines(data[:len(data)-1], 76, eol))).(*base64Reader)
		buf := make([]byte, len(data))
		n := 0
		for r.slow == nil {
			k, err := r.Read(buf[n:])
			n += k
			if err != nil {
				break
			}
		}
		if n < len(data)-3 {
			t.Fatalf("eol %q: handed over after %d of %d bytes", eol, n, len(data))
		}
	}
}

// BenchmarkBodyDecoderBase64 decodes a 10 MB envelope's base64 (76-column CRLF lines, and
// OpenSSL's 64-column LF lines) as the classifier does (decode), with the fast decoder and with
// the filter and decoder it replaces.
func BenchmarkBodyDecoderBase64(b *testing.B) {
	data := make([]byte, 10<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, form := range []struct {
		name  string
		width int
		eol   string
	}{{"76crlf", 76, "\r\n"}, {"64lf", 64, "\n"}} {
		text := lines(data, form.width, form.eol)
		for _, dec := range []struct {
			name string
			mk   func(io.Reader) io.Reader
		}{{"fast", newBase64Reader}, {"filter", slowBase64}} {
			b.Run(form.name+"/"+dec.name, func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				for b.Loop() {
					buf := bytes.NewBuffer(make([]byte, 0, len(text)/4*3+bytes.MinRead))
					if _, err := buf.ReadFrom(dec.mk(bufio.NewReader(bytes.NewReader(text)))); err != nil || buf.Len() != len(data) {
						b.Fatal(err, buf.Len())
					}
				}
			})
		}
	}
}
