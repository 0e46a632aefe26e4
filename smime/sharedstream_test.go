package smime

import (
	"bytes"
	"errors"
	"hash/crc32"
	"io"
	"runtime"
	"testing"
)

// TestBase64TailStreamTo: StreamTo writes what WriteTo writes, for every phase of tails of many
// lengths cut into parts anywhere, before and after WriteTo has made the lines, and keeps
// nothing of what it encodes.
func TestBase64TailStreamTo(t *testing.T) {
	data := make([]byte, 3*base64Block)
	for i := range data {
		data[i] = byte(i*131 + i>>9)
	}
	for _, size := range []int{1, 2, 56, 57, 58, 114, 1000, 40000, 3 * base64Block} {
		for _, cut := range []int{0, 1, size / 3, size - 1} {
			tail := [][]byte{data[:cut], data[cut:size]}
			for _, ownLen := range []int{0, 1, 2, 30, 56, 57, 58, 200} {
				own := bytes.Repeat([]byte{7}, ownLen)
				shared := NewSharedBase64(tail)
				tl := shared.Tail(own)
				if tl == nil {
					continue
				}
				var streamed bytes.Buffer
				n, err := tl.StreamTo(&streamed)
				if err != nil || n != int64(streamed.Len()) {
					t.Fatalf("size %d, cut %d, own %d: StreamTo = %d, %v for %d bytes", size, cut, ownLen, n, err, streamed.Len())
				}
				if len(shared.phases) != 0 {
					t.Fatalf("size %d, own %d: StreamTo kept the lines", size, ownLen)
				}
				var written, again bytes.Buffer
				tl.WriteTo(&written)
				tl.StreamTo(&again) // the lines WriteTo made
				if !bytes.Equal(streamed.Bytes(), written.Bytes()) || !bytes.Equal(again.Bytes(), written.Bytes()) {
					t.Fatalf("size %d, cut %d, own %d: StreamTo and WriteTo differ at %d", size, cut, ownLen, firstDiff(streamed.Bytes(), written.Bytes()))
				}
				// The whole package, own lines then the tail, is the base64 of own and the tail.
				var whole bytes.Buffer
				enc := NewBase64Writer(&whole)
				enc.Write(own)
				enc.Write(data[:size])
				enc.Close()
				var head bytes.Buffer
				if err := shared.WriteHead(&head, own); err != nil {
					t.Fatal(err)
				}
				if got := append(head.Bytes(), streamed.Bytes()...); !bytes.Equal(got, whole.Bytes()) {
					t.Fatalf("size %d, cut %d, own %d: head and streamed tail are not the package's base64", size, cut, ownLen)
				}
			}
		}
	}
}

type failAfter struct{ n int }

var errFull = errors.New("disk full")

func (f *failAfter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		k := f.n
		f.n = 0
		return k, errFull
	}
	f.n -= len(p)
	return len(p), nil
}

// TestBase64TailStreamToError: a failed write ends StreamTo with the error and the count of
// what was written.
func TestBase64TailStreamToError(t *testing.T) {
	tl := NewSharedBase64([][]byte{make([]byte, 1<<20)}).Tail()
	for _, at := range []int{0, 100, 50000, 1 << 20} {
		n, err := tl.StreamTo(&failAfter{n: at})
		if !errors.Is(err, errFull) || n != int64(at) {
			t.Fatalf("fail after %d: StreamTo = %d, %v", at, n, err)
		}
	}
}

// TestBase64TailStreamToMemory: streaming the base64 of a 10 MB tail allocates a small part of
// the 13.8 MB that WriteTo keeps.
func TestBase64TailStreamToMemory(t *testing.T) {
	tail := [][]byte{make([]byte, 10<<20)}
	alloc := func(f func(tl *Base64Tail)) uint64 {
		tl := NewSharedBase64(tail).Tail()
		var a, b runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&a)
		f(tl)
		runtime.ReadMemStats(&b)
		return b.TotalAlloc - a.TotalAlloc
	}
	streamed := alloc(func(tl *Base64Tail) { tl.StreamTo(io.Discard) })
	written := alloc(func(tl *Base64Tail) { tl.WriteTo(io.Discard) })
	if streamed > 1<<20 || written < 13<<20 {
		t.Fatalf("StreamTo allocated %d bytes, WriteTo %d", streamed, written)
	}
}

// BenchmarkBase64TailSpool writes the base64 of a message's shared encrypted content (1 MB and
// 10 MB) the way the spool does (a CRC over it into a file-like sink), once per message: by
// StreamTo, and by WriteTo's first use (encoded whole into memory, then written).
func BenchmarkBase64TailSpool(b *testing.B) {
	table := crc32.MakeTable(crc32.Castagnoli)
	for _, size := range []int{1 << 20, 10 << 20} {
		tail := [][]byte{make([]byte, size)}
		for _, how := range []string{"stream", "writeto"} {
			b.Run(how+"/"+map[int]string{1 << 20: "1MB", 10 << 20: "10MB"}[size], func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					tl := NewSharedBase64(tail).Tail()
					h := crc32.New(table)
					var err error
					if how == "stream" {
						_, err = tl.StreamTo(h)
					} else {
						_, err = tl.WriteTo(h)
					}
					if err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
