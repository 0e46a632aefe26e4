package cms

import (
	"bytes"
	"sort"
)

// DER identifier octets used when assembling by hand.
const (
	tagInteger     = 0x02
	tagOctetString = 0x04
	tagSequence    = 0x30
	tagSet         = 0x31
	tagContext0    = 0xa0 // [0] constructed
	tagContext0Pri = 0x80 // [0] primitive
)

// appendHeader appends a DER identifier and definite length.
func appendHeader(dst []byte, tag byte, n int) []byte {
	dst = append(dst, tag)
	switch {
	case n < 0x80:
		return append(dst, byte(n))
	case n < 1<<8:
		return append(dst, 0x81, byte(n))
	case n < 1<<16:
		return append(dst, 0x82, byte(n>>8), byte(n))
	case n < 1<<24:
		return append(dst, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		return append(dst, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// headerLen is len(appendHeader(nil, tag, n)).
func headerLen(n int) int {
	switch {
	case n < 0x80:
		return 2
	case n < 1<<8:
		return 3
	case n < 1<<16:
		return 4
	case n < 1<<24:
		return 5
	default:
		return 6
	}
}

// tlvLen is the encoded size of an element with n content octets.
func tlvLen(n int) int { return headerLen(n) + n }

// sortSetOf orders encodings as DER requires for SET OF (X.690 11.6): as octet strings, the
// shorter one padded with zero octets at its end.
func sortSetOf(elems [][]byte) {
	sort.SliceStable(elems, func(i, j int) bool {
		a, b := elems[i], elems[j]
		n := min(len(a), len(b))
		if c := bytes.Compare(a[:n], b[:n]); c != 0 {
			return c < 0
		}
		// Equal up to the shorter one: a sorts first only if b goes on with a non-zero octet.
		return len(b) > n && !allZero(b[n:])
	})
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
