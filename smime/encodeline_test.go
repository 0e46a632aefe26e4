package smime

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"testing"
)

// TestEncodeLine: encodeLine writes base64.StdEncoding's 76 characters for every 57-byte line:
// each byte value at each position, and random lines.
func TestEncodeLine(t *testing.T) {
	check := func(src []byte) {
		t.Helper()
		got, want := make([]byte, LineLength), make([]byte, LineLength)
		encodeLine(got, src)
		base64.StdEncoding.Encode(want, src)
		if !bytes.Equal(got, want) {
			t.Fatalf("line %x: got %s, want %s", src, got, want)
		}
	}
	src := make([]byte, lineInput)
	for pos := range lineInput {
		for c := range 256 {
			clear(src)
			src[pos] = byte(c)
			check(src)
			for i := range src {
				src[i] = ^byte(0)
			}
			src[pos] = byte(c)
			check(src)
		}
	}
	rng := rand.New(rand.NewPCG(57, 76))
	for range 20000 {
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		check(src)
	}
}

// BenchmarkEncodeLine encodes 1 MB in 57-byte lines, with encodeLine and with
// base64.StdEncoding.Encode.
func BenchmarkEncodeLine(b *testing.B) {
	in := make([]byte, lineInput*18000)
	for i := range in {
		in[i] = byte(i*7 + i>>8)
	}
	out := make([]byte, LineLength)
	for _, enc := range []struct {
		name string
		f    func(dst, src []byte)
	}{{"pairs", encodeLine}, {"std", base64.StdEncoding.Encode}} {
		b.Run(enc.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for b.Loop() {
				for i := 0; i+lineInput <= len(in); i += lineInput {
					enc.f(out, in[i:i+lineInput])
				}
			}
		})
	}
}
