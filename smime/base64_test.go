package smime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// refBase64 is the definition: standard base64 of all of in, cut into 76-column CRLF lines.
func refBase64(in []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(in)
	var out bytes.Buffer
	for len(enc) > 0 {
		k := min(LineLength, len(enc))
		out.WriteString(enc[:k] + "\r\n")
		enc = enc[k:]
	}
	return out.Bytes()
}

func encodeChunks(t testing.TB, in []byte, chunk int) []byte {
	var out bytes.Buffer
	w := NewBase64Writer(&out)
	for p := in; len(p) > 0; {
		k := min(chunk, len(p))
		if n, err := w.Write(p[:k]); n != k || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, k)
		}
		p = p[k:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func TestBase64Writer(t *testing.T) {
	data := make([]byte, 3*blockLines*lineInput+100)
	for i := range data {
		data[i] = byte(i * 7)
	}
	tests := []struct {
		name  string
		size  int
		chunk int
	}{
		{"ok empty", 0, 1},
		{"ok one byte", 1, 1},
		{"ok short line", 10, 3},
		{"ok exactly one line", lineInput, lineInput},
		{"ok line plus one", lineInput + 1, 5},
		{"ok one block", blockLines * lineInput, 1 << 20},
		{"ok block boundary in small writes", blockLines*lineInput + 2, 56},
		{"ok several blocks at once", len(data), 1 << 20},
		{"ok several blocks byte by byte", len(data), 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := data[:tc.size]
			if got, want := encodeChunks(t, in, tc.chunk), refBase64(in); !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d; first difference at %d", len(got), len(want), firstDiff(got, want))
			}
		})
	}
}

func TestBase64WriterError(t *testing.T) {
	w := NewBase64Writer(failWriter{})
	big := make([]byte, 2*blockLines*lineInput)
	if _, err := w.Write(big); !errors.Is(err, errWrite) {
		t.Fatalf("fail write error: Write = %v, want %v", err, errWrite)
	}
	if err := w.Close(); !errors.Is(err, errWrite) {
		t.Fatalf("fail write error: Close = %v, want %v", err, errWrite)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestBase64WriterRandom compares with the definition for random sizes and write sizes.
func TestBase64WriterRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		in := make([]byte, r.IntN(3*lineInput*8))
		for i := range in {
			in[i] = byte(r.Uint32())
		}
		chunk := 1 + r.IntN(2*lineInput)
		if got, want := encodeChunks(t, in, chunk), refBase64(in); !bytes.Equal(got, want) {
			t.Fatalf("%d bytes in chunks of %d: first difference at %d", len(in), chunk, firstDiff(got, want))
		}
	}
}

func BenchmarkBase64Writer(b *testing.B) {
	in := make([]byte, 1<<20)
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		w := NewBase64Writer(io.Discard)
		w.Write(in)
		w.Close()
	}
}
