package hsm

import (
	"bytes"
	"encoding/asn1"
	"math/big"
	"testing"
)

// TestECDSADER: PKCS#11's r || s comes out as encoding/asn1 encodes the two integers, whatever
// leading zeros or high bits they have, for P-256, P-384 and P-521 sizes; an odd or empty
// signature is refused.
func TestECDSADER(t *testing.T) {
	for _, n := range []int{32, 48, 66} {
		for _, pat := range [][2]byte{{0x00, 0x00}, {0x80, 0x7f}, {0x00, 0x80}, {0xff, 0x01}, {0x01, 0xff}} {
			for _, zeros := range []int{0, 1, 2, n - 1} {
				sig := make([]byte, 2*n)
				for i := range sig {
					sig[i] = byte(i*7 + 3)
				}
				sig[0], sig[n] = pat[0], pat[1]
				for i := 1; i < zeros; i++ {
					sig[i] = 0
				}
				got, err := ecdsaDER(sig)
				if err != nil {
					t.Fatal(err)
				}
				want, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:n]), new(big.Int).SetBytes(sig[n:])})
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("n %d pattern %x zeros %d:\n got %x\nwant %x", n, pat, zeros, got, want)
				}
			}
		}
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}} {
		if _, err := ecdsaDER(bad); err == nil {
			t.Fatalf("%x encoded", bad)
		}
	}
}
