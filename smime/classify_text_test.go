package smime

import (
	"encoding/base64"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// TestCleanBase64Begin: cleanBase64 (Classify's check of a text part that is base64 no header
// declares) never passes a body whose decoded bytes hold "begin " (the start of a uuencoded
// block, which Classify must then decode and look at), wherever "begin " falls: at every fifth
// offset up to 13,000, so that one of any 5 in a row crosses from one piece it looks at to the
// next, in lines of whole groups of 4 characters and not. The same bytes without it pass.
func TestCleanBase64Begin(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	noise := make([]byte, 17000)
	r.Read(noise)
	noise[0] = 'x' // not a SEQUENCE: not CMS
	lines := func(enc string, width int) []byte {
		var b strings.Builder
		for len(enc) > width {
			b.WriteString(enc[:width] + "\r\n")
			enc = enc[width:]
		}
		b.WriteString(enc + "\r\n")
		return []byte(b.String())
	}
	for _, width := range []int{76, 75} {
		if !cleanBase64(lines(base64.RawStdEncoding.EncodeToString(noise), width)) {
			t.Fatalf("lines of %d: bytes without \"begin \" did not pass", width)
		}
		for k := 0; k <= 13000; k += 5 {
			dec := slices.Concat(noise[:k], []byte("begin "), noise[k:k+4000])
			if cleanBase64(lines(base64.RawStdEncoding.EncodeToString(dec), width)) {
				t.Fatalf("lines of %d: \"begin \" decoded at %d passed", width, k)
			}
		}
	}
}
