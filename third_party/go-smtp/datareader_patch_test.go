package smtp

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
)

// BenchmarkDataReader is the DATA reader alone over a buffered 1 MB body of 78-byte lines, the
// shape of base64. From the repository's root:
//
//	go test -run '^$' -bench DataReader github.com/emersion/go-smtp
//
// The patch's output is compared with the unpatched reader's by TestDataReaderPatch in smtpfront.
func BenchmarkDataReader(b *testing.B) {
	line := strings.Repeat("A", 76) + "\r\n"
	body := []byte(strings.Repeat(line, (1<<20)/len(line)) + ".\r\n")
	br := bufio.NewReaderSize(nil, 32<<10)
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(body)))
	for i := 0; i < b.N; i++ {
		br.Reset(bytes.NewReader(body))
		r := &dataReader{r: br}
		for {
			_, err := r.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
