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
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"crypto/x509"

	"appliance/cms"
	"appliance/directory"
	"appliance/internal/interop"
	"appliance/internal/procs"
	"appliance/lists"
	"appliance/split"
)

// BenchmarkListExpand expands one 50 KB post encrypted to the list to 10,000 members and writes
// every package out, as the queue would, once with an RSA-2048 list key (the post's content key
// under RSA key transport) and once with a P-256 one (under ECDH key agreement; the list signs
// with ECDSA). It reports members/s next to the token's wrap and sign rates measured in the same
// run with the same parallelism, and the peak RSS of the process. Each member costs one wrap
// and one signature on the token: min(wrap, sign) is the ceiling were the two overlapped for
// free, and 1/(1/wrap + 1/sign), the time of both, is the floor the expansion can reach when
// everything else it does is free ("%of-floor"). The P-256 list also expands a 5 KB post
// (p256-5KB): the list's signature covers each member's whole entity, so every member costs a
// SHA-256 of it besides the token's two operations, and that cost follows the post's size.
//
//	go test -run '^$' -bench ListExpand -benchtime 1x ./pipeline
//
// With -short (the test suite's one pass of every benchmark, which proves it runs, not its
// numbers) the list has 500 members.
func BenchmarkListExpand(b *testing.B) {
	n := 10000
	if testing.Short() {
		n = 500
	}
	first := newListPipeline(b, split.Policy{}, nil, lists.List{Posters: lists.Posters{Anyone: true}}, []string{"bob@example.test"})
	members := cachedMembers(b, first.env, n)
	addrs := make([]string, n)
	for i := range addrs {
		addrs[i] = members.addr(i)
	}
	post := func(size int) []byte {
		content := make([]byte, 0, size)
		content = append(content, "Content-Type: text/plain\r\n\r\n"...)
		for len(content) < size {
			content = append(content, strings.Repeat("x", 70)+"\r\n"...)
		}
		return content
	}
	content := post(50 << 10)
	cert := readCertTB(b, filepath.Join(members.dir, members.names[0]+".pem"))
	b.Run("rsa2048", func(b *testing.B) {
		ls := newListPipeline(b, split.Policy{}, []memberPKI{members}, lists.List{Posters: lists.Posters{Anyone: true}}, addrs)
		der := interop.OpenSSLEncrypt(b, ls.env.PKI, content, []string{"list"}, interop.EncryptOptions{})
		benchExpand(b, ls, encryptedPost(der, "olivia@example.org"), "pkcs11:object=list", cert, addrs)
	})
	b.Run("p256", func(b *testing.B) {
		key := newECListKey(b, first.env, listUsage)
		ls := newListPipeline(b, split.Policy{}, []memberPKI{members}, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Anyone: true}}, addrs)
		der := interop.OpenSSLEncryptFiles(b, []string{key.certFile}, content, sha256KDF)
		benchExpand(b, ls, encryptedPost(der, "olivia@example.org"), key.uri, cert, addrs)
	})
	b.Run("p256-5KB", func(b *testing.B) {
		key := newECListKey(b, first.env, listUsage)
		ls := newListPipeline(b, split.Policy{}, []memberPKI{members}, lists.List{KeyURI: key.uri, Chain: key.chain, Posters: lists.Posters{Anyone: true}}, addrs)
		der := interop.OpenSSLEncryptFiles(b, []string{key.certFile}, post(5<<10), sha256KDF)
		benchExpand(b, ls, encryptedPost(der, "olivia@example.org"), key.uri, cert, addrs)
	})
}

// benchExpand expands post to the members addrs of ls's list, whose key is listKey, and reports
// the rates; member is one member's certificate, for the wrap rate. The directory has validated
// every member's chain before (a list's steady state: validations are cached per directory
// snapshot); the first lookup of all members, which verifies 10,000 chains, is reported apart
// as cold-lookup-s.
//
// The token is SoftHSM2 in this process, so its operations and everything else the expansion
// does share the CPU, and on a machine shared with other work the wall-clock rates drift
// between the phases. So the process CPU time is measured too: cpu-us/member is what one
// member's expansion costs, cpu-us/wrap+sign what its two token operations cost alone, and
// %of-floor-cpu their ratio, the share of the expansion's CPU that is the token's;
// cpu-us/sha256-package is what hashing one member's package (package-KB) costs, the part of
// the rest no expansion can skip; ctxsw/member is the process's context switches (voluntary and
// not) per member during the expansions, sys-us/member the part of cpu-us/member spent in the
// kernel. LIST_BENCH_CPUPROFILE=file writes a CPU profile of the timed expansions alone to
// file.<benchmark name> (-cpuprofile would take in the setup and the cold lookups); with
// LIST_BENCH_MEMPROFILE=1 too, an allocation profile beside it (.mem.).
func benchExpand(b *testing.B, ls *listSetup, post []byte, listKey string, member *x509.Certificate, addrs []string) {
	n := len(addrs)
	start := time.Now()
	for _, m := range addrs {
		if valid, _, err := ls.dir.LookupContext(context.Background(), m); err != nil || len(valid) == 0 {
			b.Fatalf("member %s: %v", m, err)
		}
	}
	cold := time.Since(start)
	wrap := func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error {
		_, err := cms.KeyTransRecipient(ctx, key, member, cms.KeyTransOptions{})
		return err
	}
	sign := func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error {
		d := sha256.Sum256([]byte("x"))
		_, err := signer.Sign(rand.Reader, d[:], crypto.SHA256)
		return err
	}
	// Measured before and after the expansion and averaged: on a shared machine the rates drift.
	wrapRate, wrapCPU := tokenRate(b, listKey, wrap)
	signRate, signCPU := tokenRate(b, listKey, sign)

	var expanded, expandedCPU time.Duration
	var expandedSwitches int64
	var expandedSys time.Duration
	var entity []byte // one member's package, for the cost of hashing it
	if f := os.Getenv("LIST_BENCH_CPUPROFILE"); f != "" {
		// The expansions alone: -cpuprofile would also take in the setup and the cold lookups.
		out, err := os.Create(f + "." + strings.ReplaceAll(b.Name(), "/", "_"))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		if os.Getenv("LIST_BENCH_MEMPROFILE") != "" {
			runtime.MemProfileRate = 4096
			defer func() {
				// Written before the rate goes back: the profile is scaled by the rate in force.
				mf, err := os.Create(f + ".mem." + strings.ReplaceAll(b.Name(), "/", "_"))
				if err != nil {
					b.Fatal(err)
				}
				pprof.Lookup("allocs").WriteTo(mf, 0)
				mf.Close()
				runtime.MemProfileRate = 512 * 1024
			}()
		}
		defer func() {
			pprof.StopCPUProfile()
			out.Close()
		}()
	}
	for b.Loop() {
		start, cpu, sys, sw := time.Now(), cpuTime(b), sysTime(b), switches(b)
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
		expandedCPU += cpuTime(b) - cpu
		expandedSwitches += switches(b) - sw
		expandedSys += sysTime(b) - sys
		var buf bytes.Buffer
		if _, err := s.Packages[0].Body.WriteTo(&buf); err != nil {
			b.Fatal(err)
		}
		entity = buf.Bytes()
	}
	pprof.StopCPUProfile()
	wrapRate2, wrapCPU2 := tokenRate(b, listKey, wrap)
	signRate2, signCPU2 := tokenRate(b, listKey, sign)
	wrapRate, signRate = (wrapRate+wrapRate2)/2, (signRate+signRate2)/2
	tokenCPU := (wrapCPU + wrapCPU2 + signCPU + signCPU2) / 2
	memberCPU := expandedCPU / time.Duration(n*b.N)
	_, hashCPU := tokenRate(b, listKey, func(context.Context, cms.ContentKey, crypto.Signer) error {
		sha256.Sum256(entity)
		return nil
	})
	rate := float64(n*b.N) / expanded.Seconds()
	b.ReportMetric(rate, "members/s")
	b.ReportMetric(wrapRate, "wraps/s")
	b.ReportMetric(signRate, "signs/s")
	b.ReportMetric(1/(1/wrapRate+1/signRate), "floor-members/s")
	b.ReportMetric(100*rate/wrapRate, "%of-wrap-rate")
	b.ReportMetric(100*rate/min(wrapRate, signRate), "%of-ceiling")
	b.ReportMetric(100*rate*(1/wrapRate+1/signRate), "%of-floor")
	b.ReportMetric(peakRSSMB(b), "peak-RSS-MB")
	b.ReportMetric(cold.Seconds(), "cold-lookup-s")
	b.ReportMetric(float64(memberCPU.Microseconds()), "cpu-us/member")
	b.ReportMetric(float64(tokenCPU.Microseconds()), "cpu-us/wrap+sign")
	b.ReportMetric(100*tokenCPU.Seconds()/memberCPU.Seconds(), "%of-floor-cpu")
	b.ReportMetric(float64(hashCPU.Microseconds()), "cpu-us/sha256-package")
	b.ReportMetric(float64(expandedSwitches)/float64(n*b.N), "ctxsw/member")
	b.ReportMetric(float64((expandedSys / time.Duration(n*b.N)).Microseconds()), "sys-us/member")
	b.ReportMetric(float64(len(entity))/1024, "package-KB")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sysTime is the CPU time the process has spent in the kernel.
func sysTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Stime.Nano())
}

// switches is the number of context switches (voluntary and not) of the process's threads.
func switches(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Nvcsw + ru.Nivcsw
}

// tokenRate runs op on the shared token with the list agent's parallelism for a second, with the
// list key listKey as the signer, and returns its rate and the process CPU time per operation.
func tokenRate(b *testing.B, listKey string, op func(ctx context.Context, key cms.ContentKey, signer crypto.Signer) error) (float64, time.Duration) {
	b.Helper()
	ctx := context.Background()
	key, err := sharedToken.GenerateCEK(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer key.Destroy(ctx)
	signer, err := sharedToken.Signer(ctx, listKey)
	if err != nil {
		b.Fatal(err)
	}
	const workers = 4 // pipeline's listParallel
	// The expansion runs with the runtime's Ps widened (the list agent's fanOut): so does the
	// floor, on the same terms.
	defer procs.Widen()()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		count int
	)
	deadline := time.Now().Add(time.Second)
	start, cpu := time.Now(), cpuTime(b)
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
	used := cpuTime(b) - cpu
	return float64(count) / time.Since(start).Seconds(), used / time.Duration(max(count, 1))
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
