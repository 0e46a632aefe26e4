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

// TestOctetsNestingBound: a constructed OCTET STRING of definite lengths nested exactly maxDepth
// deep is read; one level more is refused.
func TestOctetsNestingBound(t *testing.T) {
	nested := func(levels int) []byte {
		b := []byte{0x04, 0x01, 0x01}
		for range levels {
			b = append([]byte{0x24, byte(len(b))}, b...)
		}
		return b
	}
	for levels, ok := range map[int]bool{maxDepth: true, maxDepth + 1: false} {
		e, _, err := readElem(nested(levels), 0)
		if err != nil {
			t.Fatalf("%d levels: readElem: %v", levels, err)
		}
		v, err := e.octets(0)
		if ok && (err != nil || string(v) != "\x01") {
			t.Errorf("%d levels: %q, %v", levels, v, err)
		}
		if !ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("%d levels: %v, want %v", levels, err, ErrMalformed)
		}
	}
}

// TestReadElemLongLength: a long-form length of zero ending exactly at the input's end is an
// empty value; length octets beyond the input are refused; a value longer than what is left
// says how many bytes are left.
func TestReadElemLongLength(t *testing.T) {
	b, _ := hex.DecodeString("048100")
	if e, rest, err := readElem(b, 0); err != nil || len(e.body) != 0 || len(rest) != 0 {
		t.Errorf("readElem(048100) = %x, %x, %v", e.body, rest, err)
	}
	b, _ = hex.DecodeString("048200")
	if _, _, err := readElem(b, 0); !errors.Is(err, ErrMalformed) {
		t.Errorf("readElem(048200) = %v, want %v", err, ErrMalformed)
	}
	b, _ = hex.DecodeString("040501")
	if _, _, err := readElem(b, 0); err == nil || !strings.Contains(err.Error(), "length 5 exceeds the 1 bytes left") {
		t.Errorf("readElem(040501) = %v", err)
	}
}

// TestBigIntLength: an INTEGER (a serial number) of exactly maxSerialLen octets is read, one
// octet more is refused; a leading 1 bit makes it negative.
func TestBigIntLength(t *testing.T) {
	read := func(n int, first byte) (string, error) {
		b := append([]byte{0x02, byte(n), first}, make([]byte, n-1)...)
		e, _, err := readElem(b, 0)
		if err != nil {
			t.Fatal(err)
		}
		v, err := e.bigInt()
		if err != nil {
			return "", err
		}
		return v.Text(16), nil
	}
	if v, err := read(maxSerialLen, 0x01); err != nil || v != "1"+strings.Repeat("00", maxSerialLen-1) {
		t.Errorf("%d octets: %s, %v", maxSerialLen, v, err)
	}
	if _, err := read(maxSerialLen+1, 0x01); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d octets: %v, want %v", maxSerialLen+1, err, ErrMalformed)
	}
	if v, err := read(2, 0xff); err != nil || v != "-100" {
		t.Errorf("ff00: %s, %v", v, err)
	}
}
