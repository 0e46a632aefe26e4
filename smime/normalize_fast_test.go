package smime

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// refCanonicalCRLF is the check canonicalCount replaced: every CR in b followed by LF and every
// LF preceded by CR, within b.
func refCanonicalCRLF(b []byte) bool {
	lf := bytes.Count(b, []byte{'\n'})
	return lf == bytes.Count(b, []byte{'\r'}) && (lf == 0 || lf == bytes.Count(b, []byte("\r\n")))
}

// TestCanonicalCount: canonicalCount answers as refCanonicalCRLF followed by count did (whether
// the chunk is canonical, the refusal, the line length carried to the next chunk), and leaves
// the line length alone for a chunk that is not canonical, on random chunks of CR, LF, text and
// CRLF, from every carried length near the limit.
func TestCanonicalCount(t *testing.T) {
	rng := rand.New(rand.NewPCG(18, 5))
	pieces := []string{"\r\n", "\r\n", "\r\n", "a", "bb", "xxxxxxxx", "\r", "\n", "\r\r\n", "\n\r"}
	for i := range 200000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		chunk := []byte(b.String())
		max := rng.IntN(12) - 1 // -1: no bound
		line := rng.IntN(14)
		if max < 0 {
			line = 0
		}
		ref := &normalizer{max: max, line: line}
		wantOK := refCanonicalCRLF(chunk)
		var wantErr error
		if wantOK && len(chunk) > 0 {
			wantErr = ref.count(chunk)
		}
		got := &normalizer{max: max, line: line}
		ok, err := got.canonicalCount(chunk)
		name := fmt.Sprintf("case %d: %q, max %d, line %d", i, chunk, max, line)
		if ok != wantOK || (err == nil) != (wantErr == nil) {
			t.Fatalf("%s: canonical %v, err %v; want %v, %v", name, ok, err, wantOK, wantErr)
		}
		if !ok && got.line != line {
			t.Fatalf("%s: not canonical, yet the line length moved to %d", name, got.line)
		}
		if ok && err == nil && got.line != ref.line {
			t.Fatalf("%s: line length %d, want %d", name, got.line, ref.line)
		}
	}
}

// BenchmarkNormalizer reads a 10 MB message of 76-column CRLF lines (a client's base64) through
// the normaliser, as the front end and the pipeline do, in 32 KB reads.
func BenchmarkNormalizer(b *testing.B) {
	msg := lines(make([]byte, 10<<20), 76, "\r\n")
	b.SetBytes(int64(len(msg)))
	buf := make([]byte, 32<<10)
	for b.Loop() {
		r := NewNormalizer(bytes.NewReader(msg), Limits{})
		for {
			_, err := r.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
