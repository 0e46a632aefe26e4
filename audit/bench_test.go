package audit_test

import (
	"crypto/sha256"
	"testing"

	"appliance/audit"
)

// BenchmarkAppend: one record written and fdatasync'd per operation (the cost each accepted
// message, sealed package and delivery outcome adds when the trail is on).
func BenchmarkAppend(b *testing.B) {
	l, err := audit.Open(audit.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	a := audit.Accepted{Message: "m", From: "alice@example.test", Recipients: []string{"bob@example.org", "dave@example.net"}, Size: 1234, Digest: sha256.Sum256(nil)}
	b.ResetTimer()
	for b.Loop() {
		if err := l.Accepted(a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendParallel: 16 writers at once share fdatasyncs (group commit).
func BenchmarkAppendParallel(b *testing.B) {
	l, err := audit.Open(audit.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	a := audit.Accepted{Message: "m", From: "alice@example.test", Recipients: []string{"bob@example.org"}, Size: 1234, Digest: sha256.Sum256(nil)}
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Accepted(a); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
