package seal_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"appliance/cms"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"
)

// BenchmarkSeal seals one message as 1 To package + 20 individual Bcc packages and compares it,
// in the same run, with two references:
//
//   - floor: the HSM work the message needs, from per-operation timings taken right before: one
//     signature over this body, one content-key generation, one encryption of the signed
//     entity, and one key wrap per distinct RecipientInfo (21 recipients + the self-copy,
//     which is wrapped once and reused). Target: seal/floor <= 1.25.
//   - baseline: the same cms code used naively, one content key and one encryption per
//     package. Target for 1 MB: baseline/seal >= 4.
//
// Sealing ends with every package's CMS assembled (sharing the ciphertext); writing packages
// to the spool or the wire is the queue's work and is not part of either side.
func BenchmarkSeal(b *testing.B) {
	r := setup(b)
	to := []string{"bob@example.test"}
	rcpts := append([]string{}, to...)
	for i := 1; i <= 20; i++ {
		rcpts = append(rcpts, fmt.Sprintf("u%02d@example.test", i))
	}
	for _, size := range []int{100 << 10, 1 << 20, 10 << 20} {
		b.Run(sizeName(size), func(b *testing.B) {
			msg := message(to, bodyOf(size))
			plan, certs := r.plan(b, msg, rcpts, "compat", split.Individual)
			if len(plan.Packages) != 21 {
				b.Fatalf("plan has %d packages, want 21", len(plan.Packages))
			}
			s := r.sealer()
			ctx := context.Background()

			floor := measureFloor(b, r, s, msg, certs, len(rcpts)+1) // + the self-copy
			baseline := measure(5, func() { sealNaive(b, r, s, msg, plan, certs) })

			b.ResetTimer()
			var runs []time.Duration
			for b.Loop() {
				t0 := time.Now()
				if _, err := s.Seal(ctx, msg, plan, r.sender, certs); err != nil {
					b.Fatal(err)
				}
				runs = append(runs, time.Since(t0))
			}
			// Medians on both sides: this machine is a VM whose neighbours come and go, and a
			// median is not moved by a few slow calls the way a mean is.
			per := median(runs)
			b.ReportMetric(float64(floor.Microseconds())/1000, "floor-ms")
			b.ReportMetric(float64(per)/float64(floor), "x-floor")
			b.ReportMetric(float64(baseline)/float64(per), "baseline/seal")
		})
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%dKB", n>>10)
}

// bodyOf is a base64 attachment-like body of about n bytes, in 76-column CRLF lines.
func bodyOf(n int) string {
	raw := make([]byte, n*3/4)
	rand.Read(raw)
	var b strings.Builder
	w := smime.NewBase64Writer(&b)
	w.Write(raw)
	w.Close()
	return b.String()
}

// measure is the median time of n calls of f, after one to warm up.
func measure(n int, f func()) time.Duration {
	f()
	runs := make([]time.Duration, n)
	for i := range runs {
		t0 := time.Now()
		f()
		runs[i] = time.Since(t0)
	}
	return median(runs)
}

func median(d []time.Duration) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[len(d)/2]
}

// measureFloor times the HSM operations one sealed message needs, each on its own.
func measureFloor(b *testing.B, r *rig, s *seal.Sealer, msg []byte, certs map[string]*x509.Certificate, wraps int) time.Duration {
	ctx := context.Background()
	_, entity, err := smime.Split(bytes.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	sign := measure(30, func() {
		if _, err := cms.Sign(r.sender.Signer, r.sender.Chain, entity, cms.SignOptions{Hash: crypto.SHA256, Detached: true}); err != nil {
			b.Fatal(err)
		}
	})
	gen := measure(100, func() {
		k, err := s.NewKey(ctx)
		if err != nil {
			b.Fatal(err)
		}
		k.(interface{ Destroy(context.Context) error }).Destroy(ctx)
	})
	key, err := s.NewKey(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer key.(interface{ Destroy(context.Context) error }).Destroy(ctx)
	encrypt := measure(10, func() {
		if _, err := cms.Encrypt(ctx, key, cms.AES256CBC, bytes.NewReader(entity)); err != nil {
			b.Fatal(err)
		}
	})
	var cert *x509.Certificate
	for _, c := range certs {
		cert = c
		break
	}
	wrap := measure(200, func() {
		if _, err := cms.KeyTransRecipient(ctx, key, cert, cms.KeyTransOptions{}); err != nil {
			b.Fatal(err)
		}
	})
	return sign + gen + encrypt + time.Duration(wraps)*wrap
}

// sealNaive is the baseline: the message is signed once, as by Seal, but every package gets its
// own content key, its own encryption and its own wraps (the self-copy too).
func sealNaive(b *testing.B, r *rig, s *seal.Sealer, msg []byte, plan *split.Plan, certs map[string]*x509.Certificate) {
	ctx := context.Background()
	_, entity, err := smime.Split(bytes.NewReader(msg))
	if err != nil {
		b.Fatal(err)
	}
	sig, err := cms.Sign(r.sender.Signer, r.sender.Chain, entity, cms.SignOptions{Hash: crypto.SHA256, Detached: true})
	if err != nil {
		b.Fatal(err)
	}
	signed := smime.SignedEntity(entity, sig, "sha-256")
	for _, pk := range plan.Packages {
		key, err := s.NewKey(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ec, err := cms.Encrypt(ctx, key, cms.AES256CBC, bytes.NewReader(signed))
		if err != nil {
			b.Fatal(err)
		}
		var ris []*cms.RecipientInfo
		for _, c := range pk.Certs {
			ri, err := cms.KeyTransRecipient(ctx, key, certs[c.ID], cms.KeyTransOptions{})
			if err != nil {
				b.Fatal(err)
			}
			ris = append(ris, ri)
		}
		if _, err := cms.Envelope(ec, ris); err != nil {
			b.Fatal(err)
		}
		key.(interface{ Destroy(context.Context) error }).Destroy(ctx)
	}
}

// BenchmarkSealSmall: Seal of a 10 KB message to one recipient (with the self-copy: two
// wraps, one package), the common message of bench/run.sh's 10k shape, on SoftHSM2. The
// token's signature, key and wraps are in every op; allocs/op and B/op are seal's own.
func BenchmarkSealSmall(b *testing.B) {
	r := setup(b)
	to := []string{"bob@example.test"}
	msg := message(to, bodyOf(10<<10))
	plan, certs := r.plan(b, msg, to, "compat", split.Individual)
	s := r.sealer()
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Seal(ctx, msg, plan, r.sender, certs); err != nil {
			b.Fatal(err)
		}
	}
}
