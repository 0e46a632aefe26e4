package pipeline_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/x509"

	"appliance/cms"
	"appliance/directory"
	"appliance/internal/interop"
	"appliance/lists"
	"appliance/split"
)

// BenchmarkListExpand expands one 50 KB post encrypted to the list to 10,000 members and writes
// every package out, as the queue would. It reports members/s next to the token's wrap and sign
// rates measured in the same run with the same parallelism, and the peak RSS of the process.
// Each member costs one wrap and one signature on the token: min(wrap, sign) is the ceiling were
// the two overlapped for free, and 1/(1/wrap + 1/sign), the time of both, is the floor the
// expansion can reach when everything else it does is free ("%of-floor").
//
//	go test -run '^$' -bench ListExpand -benchtime 1x ./pipeline
func BenchmarkListExpand(b *testing.B) {
	const n = 10000
	first := newListPipeline(b, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	members := cachedMembers(b, first.env, n)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = members.addr(i)
	}
	ls := newListPipeline(b, split.Policy{}, []memberPKI{members}, lists.List{Posters: lists.Posters{Anyone: true}}, addrs)

	content := make([]byte, 0, 50<<10)
	content = append(content, "Content-Type: text/plain\r\n\r\n"...)
	for len(content) < 50<<10 {
		content = append(content, strings.Repeat("x", 70)+"\r\n"...)
	}
	der := interop.OpenSSLEncrypt(b, ls.env.PKI, content, []string{"list"}, interop.EncryptOptions{})
	post := encryptedPost(der, "olivia@example.org")

	cert := readCertTB(b, filepath.Join(members.dir, members.names[0]+".pem"))
	wrap := func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error {
		_, err := cms.KeyTransRecipient(ctx, key, cert, cms.KeyTransOptions{})
		return err
	}
	sign := func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error {
		d := sha256.Sum256([]byte("x"))
		_, err := signer.Sign(rand.Reader, d[:], crypto.SHA256)
		return err
	}
	// Measured before and after the expansion and averaged: on a shared machine the rates drift.
	wrapRate, signRate := tokenRate(b, wrap), tokenRate(b, sign)

	var expanded time.Duration
	for b.Loop() {
		start := time.Now()
		s, err := ls.pipe.Process(context.Background(), "B1", postEnv("olivia@example.org"), bytes.NewReader(post))
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Packages) != n {
			b.Fatalf("%d packages, want %d", len(s.Packages), n)
		}
		for _, pk := range s.Packages {
			if _, err := pk.Body.WriteTo(io.Discard); err != nil {
				b.Fatal(err)
			}
		}
		expanded += time.Since(start)
	}
	wrapRate, signRate = (wrapRate+tokenRate(b, wrap))/2, (signRate+tokenRate(b, sign))/2
	rate := float64(n*b.N) / expanded.Seconds()
	b.ReportMetric(rate, "members/s")
	b.ReportMetric(wrapRate, "wraps/s")
	b.ReportMetric(signRate, "signs/s")
	b.ReportMetric(100*rate/wrapRate, "%of-wrap-rate")
	b.ReportMetric(100*rate/min(wrapRate, signRate), "%of-ceiling")
	b.ReportMetric(100*rate*(1/wrapRate+1/signRate), "%of-floor")
	b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
}

// tokenRate runs op on the shared token with the list agent's parallelism for a second.
func tokenRate(b *testing.B, op func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error) float64 {
	b.Helper()
	ctx := context.Background()
	key, err := sharedToken.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer key.Destroy(ctx)
	signer, err := sharedToken.Signer(ctx, "pkcs11:object=list")
	if err != nil {
		b.Fatal(err)
	}
	const workers = 4 // pipeline's listParallel
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count int
	)
	deadline := time.Now().Add(time.Second)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := 0
			for time.Now().Before(deadline) {
				if err := op(ctx, key, signer); err != nil {
					b.Error(err)
					return
				}
				k++
			}
			mu.Lock()
			count += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	return float64(count) / time.Since(start).Seconds()
}

func readCertTB(b *testing.B, path string) *x509.Certificate {
	b.Helper()
	certs, err := directory.LoadCertificates(path)
	if err != nil || len(certs) == 0 {
		b.Fatalf("%s: %v", path, err)
	}
	return certs[0]
}

// peakRSSMB is VmHWM of /proc/self/status in MB (0 where there is no /proc).
func peakRSSMB(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	return 0
}
