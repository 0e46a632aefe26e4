package cms

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"appliance/internal/softhsmtest"
)

// BenchmarkEnvelope measures assembling one package from shared encrypted content: the time must
// not grow with the content size (compare the 100KB and 10MB results), only with recipients.
func BenchmarkEnvelope(b *testing.B) {
	env := softhsmtest.Setup(b)
	ctx := context.Background()
	for _, alg := range []ContentAlgorithm{AES256CBC, AES256GCM} {
		for _, size := range []int{100 << 10, 10 << 20} {
			key := newSoftKey(b)
			ec, err := Encrypt(ctx, key, alg, bytes.NewReader(make([]byte, size)))
			if err != nil {
				b.Fatal(err)
			}
			var ris []*RecipientInfo
			for _, u := range []string{"alice", "bob", "carol"} {
				ri, err := KeyTransRecipient(ctx, key, env.Cert(b, u), KeyTransOptions{})
				if err != nil {
					b.Fatal(err)
				}
				ris = append(ris, ri)
			}
			b.Run(fmt.Sprintf("%v/%dKB/3rcpt", alg, size>>10), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Envelope(ec, ris); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSplitClientMessage parses a client-encrypted 10 MB message and re-encodes it for one
// recipient, then writes it out; compare with BenchmarkCopy10MB (what issue 5 measures against).
func BenchmarkSplitClientMessage(b *testing.B) {
	env := softhsmtest.Setup(b)
	ctx := context.Background()
	key := newSoftKey(b)
	ec, err := Encrypt(ctx, key, AES256CBC, bytes.NewReader(make([]byte, 10<<20)))
	if err != nil {
		b.Fatal(err)
	}
	var ris []*RecipientInfo
	for _, u := range []string{"bob", "carol", "dave", "erin"} {
		ri, err := KeyTransRecipient(ctx, key, env.Cert(b, u), KeyTransOptions{})
		if err != nil {
			b.Fatal(err)
		}
		ris = append(ris, ri)
	}
	enc, err := Envelope(ec, ris)
	if err != nil {
		b.Fatal(err)
	}
	data := enc.Bytes()
	b.Run("parse+subset", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			p, err := ParseEnveloped(data)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := p.WithRecipients(p.RecipientInfos[:1]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse+subset+write", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		var out bytes.Buffer
		out.Grow(len(data))
		for b.Loop() {
			out.Reset()
			p, _ := ParseEnveloped(data)
			sub, _ := p.WithRecipients(p.RecipientInfos[:1])
			sub.WriteTo(&out)
		}
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		dst := make([]byte, len(data))
		for b.Loop() {
			copy(dst, data)
		}
	})
}
