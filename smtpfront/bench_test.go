package smtpfront

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/emersion/go-smtp"
)

// BenchmarkData measures one transaction of a 1 MB message over loopback
// into a file spool with fsync: the front end's share of the per-message
// cost the README's Benchmark compares with Postfix.
func BenchmarkData(b *testing.B) {
	for _, size := range []int{10 << 10, 1 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			spool := newFileSpool(b)
			ts := startServer(b, Options{}, spool, newTestPolicy())
			line := strings.Repeat("0123456789", 7) + "\r\n"
			msg := []byte(goodMsg + strings.Repeat(line, size/len(line)))
			c, err := smtp.Dial(ts.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.SetBytes(int64(len(msg)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := c.SendMail("alice@example.test", []string{"bob@example.test"}, bytes.NewReader(msg)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return "1MB"
	}
	return "10KB"
}

// BenchmarkCRLFReader is the front end's own pass over every body byte, for
// canonical mail (the common case) and for mail with bare LFs.
func BenchmarkCRLFReader(b *testing.B) {
	line := strings.Repeat("0123456789", 7)
	for _, bc := range []struct{ name, eol string }{{"crlf", "\r\n"}, {"bare-lf", "\n"}} {
		msg := []byte(strings.Repeat(line+bc.eol, 10<<10/72))
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 64<<10)
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				r := newCRLFReader(bytes.NewReader(msg))
				for {
					if _, err := r.Read(buf); err != nil {
						break
					}
				}
			}
		})
	}
}

// byteLoopCRLF is the plain definition crlfReader's fast path must agree
// with: each bare CR or LF becomes CRLF, a CR followed by LF stays one pair.
func byteLoopCRLF(in []byte) []byte {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch {
		case in[i] == '\r' && i+1 < len(in) && in[i+1] == '\n':
			out = append(out, '\r', '\n')
			i++
		case in[i] == '\r' || in[i] == '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, in[i])
		}
	}
	return out
}

// The reader gives the definition's output for any input, however the
// reads are cut (a CR and its LF in different reads, tiny buffers).
func FuzzCRLFReaderMatchesDefinition(f *testing.F) {
	for _, s := range []string{"a\r\nb", "a\nb", "a\rb", "\r", "\n", "\r\r\n\n", "x\r", "\r\n\r\n.\r\n"} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint8) {
		want := byteLoopCRLF(in)
		for _, r := range []io.Reader{bytes.NewReader(in), iotest.HalfReader(bytes.NewReader(in)), iotest.OneByteReader(bytes.NewReader(in))} {
			cr := newCRLFReader(r)
			var got []byte
			buf := make([]byte, int(cut%7)+1)
			for {
				n, err := cr.Read(buf)
				got = append(got, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read %q as %q, want %q", in, got, want)
			}
		}
	})
}
