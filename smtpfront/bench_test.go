package smtpfront

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// BenchmarkData measures one transaction of a 1 MB message over loopback
// into a file spool with fsync: the front end's share of the per-message
// cost DESIGN section 12 compares with Postfix.
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
