package cms

// Tests that kill mutants scripts/mutation.sh found living in cms (docs/testing.md, "Mutation
// testing").

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// TestReadElemBounds: BER nesting is taken to exactly maxDepth and refused one deeper; a high
// tag number of five octets is refused even when a length and value follow; an element that
// ends right after its tag is refused as truncated.
func TestReadElemBounds(t *testing.T) {
	nested := func(levels int) []byte {
		b, _ := hex.DecodeString(strings.Repeat("2480", levels) + "040101" + strings.Repeat("0000", levels))
		return b
	}
	if _, _, err := readElem(nested(maxDepth), 0); err != nil {
		t.Errorf("%d levels of nesting: %v", maxDepth, err)
	}
	if _, _, err := readElem(nested(maxDepth+1), 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d levels of nesting: %v, want %v", maxDepth+1, err, ErrMalformed)
	}
	for _, in := range []string{"1f818181810100", "1f01", "9f8101"} {
		b, _ := hex.DecodeString(in)
		if _, _, err := readElem(b, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("readElem(%s) = %v, want %v", in, err, ErrMalformed)
		}
	}
	b, _ := hex.DecodeString("1f81818101" + "0100")
	if e, _, err := readElem(b, 0); err != nil || e.tag != 1<<21|1<<14|1<<7|1 {
		t.Errorf("four-octet high tag: tag %d, %v", e.tag, err)
	}
}
