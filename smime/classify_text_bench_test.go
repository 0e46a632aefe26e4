package smime_test

import (
	"syscall"
	"testing"
	"time"

	"appliance/internal/testtext"
	"appliance/smime"
)

// benchText is the bench's plain message (testtext.Message: a text body of size bytes in
// 76-column CRLF lines of base64's alphabet, random, declared 7bit), the shape whose check at
// end of DATA issue 18 measured: a 7bit body not starting with 0x30 reads as base64.
func benchText(size int) []byte { return testtext.Message(size) }

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
