package smime_test

import (
	"bytes"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"appliance/smime"
)

// benchText is the bench's plain message (bench/loadgen: a text body of size bytes in
// 76-column CRLF lines of base64's alphabet, random, declared 7bit), the shape whose check at
// end of DATA issue 18 measured: a 7bit body not starting with 0x30 reads as base64.
func benchText(size int) []byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString("From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: bench 1m #1\r\n" +
		"Message-ID: <1@example.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n")
	line := make([]byte, 76)
	for start := b.Len(); b.Len()-start < size; {
		for i := range line {
			line[i] = alphabet[r.IntN(len(alphabet))]
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// BenchmarkClassifyText: Classify of the bench's plain message at 10 KB, 50 KB and 1 MB, what
// the check at end of DATA does with a message that is not one client envelope; /reference is
// the classifier before issue 18's cheaper check of text parts (smime.RefClassify), which
// decoded the whole body.
func BenchmarkClassifyText(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"10KB", 10 << 10}, {"50KB", 50 << 10}, {"1MB", 1 << 20}} {
		msg := benchText(size.n)
		for _, f := range []struct {
			name     string
			classify func([]byte) *smime.Classification
		}{{"", smime.Classify}, {"/reference", smime.RefClassify}} {
			b.Run(size.name+f.name, func(b *testing.B) {
				b.SetBytes(int64(len(msg)))
				b.ReportAllocs()
				start := cpuTime()
				for b.Loop() {
					if c := f.classify(msg); c.Class != smime.Plain {
						b.Fatal(c.Class, c.Reason)
					}
				}
				b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

// cpuTime is the CPU time this process has used, user and system, in all its threads (the
// garbage collector's included): on a machine shared with other work, cpu-ns/op says what a
// benchmark costs where ns/op says how long it waited too.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
