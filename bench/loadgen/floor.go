package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"appliance/config"
	"appliance/directory"
	"appliance/hsm"
)

// signedOverhead approximates what signing adds to the body before encryption: the
// multipart/signed wrapping, the SignedData with the two-certificate chain, base64.
const signedOverhead = 4 << 10

func cmdFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	cfgPath := fs.String("config", "", "the appliance's configuration (its [hsm] and first [[sender]])")
	rcptCert := fs.String("rcpt-cert", "", "a recipient's RSA certificate (PEM) to wrap for")
	p256Key := fs.String("p256-key", "", "PKCS #11 URI of an ECDSA P-256 sender key, for the floor of the p256 shapes")
	parallel := fs.Int("parallel", runtime.NumCPU(), "goroutines per operation (the token's concurrency)")
	each := fs.Duration("each", 1500*time.Millisecond, "how long to time each operation")
	out := fs.String("out", "", "append the results as JSON lines to this file")
	fs.Parse(args)

	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if len(cfg.Senders) == 0 {
		return fmt.Errorf("failed to measure floor: %q has no [[sender]]", *cfgPath)
	}
	certs, err := directory.LoadCertificates(*rcptCert)
	if err != nil {
		return err
	}
	pub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("failed to measure floor: %q is not an RSA certificate", *rcptCert)
	}
	pin, err := cfg.PIN()
	if err != nil {
		return err
	}
	tok, err := hsm.Open(hsm.Config{Module: cfg.HSM.Module, TokenLabel: cfg.HSM.Token, PIN: pin, MaxSessions: max(cfg.HSM.MaxSessions, *parallel)})
	if err != nil {
		return err
	}
	defer tok.Close()
	ctx := context.Background()
	signer, err := tok.Signer(ctx, cfg.Senders[0].Key)
	if err != nil {
		return err
	}

	load := loadavg()
	rates, err := measureRates(ctx, tok, signer, pub, *parallel, *each)
	if err != nil {
		return err
	}
	if *p256Key != "" {
		ec, err := tok.Signer(ctx, *p256Key)
		if err != nil {
			return err
		}
		r, err := measureSign(ec, *parallel, *each)
		if err != nil {
			return err
		}
		rates["sign_p256_per_s"] = r
	}
	wireLoad := loadavg()
	for _, name := range shapeNames() {
		sh := shapes[name]
		if sh.Base != "" {
			continue // the same packages as its base shape
		}
		// The best of a few connection counts: a floor must not be low because of how it was
		// measured.
		var bps, cpuPerByte float64
		for _, conns := range []int{*parallel, 2 * *parallel, 4 * *parallel} {
			r, c, err := measureWire(conns, sh.packageBytes(), *each)
			if err != nil {
				return err
			}
			if r > bps {
				bps, cpuPerByte = r, c
			}
		}
		ms := 1000 * float64(sh.Packages*sh.packageBytes()) / bps
		r := Result{
			Kind: "floor", Label: "wire-floor", Shape: name, Parallel: *parallel,
			Rates:      map[string]float64{"wire_bytes_per_s": bps, "package_bytes": float64(sh.packageBytes())},
			FloorPerOp: map[string]float64{"wire": ms},
			Messages:   1, Packages: sh.Packages, Seconds: ms / 1000,
			MsgPerSec: 1000 / ms, PkgPerSec: 1000 / ms * float64(sh.Packages),
			LoadBefore: wireLoad, LoadAfter: loadavg(),
			// The sender's and the sink's CPU per message of the shape, for comparison with
			// what the generator and the sink cost beside a relay (OwnCPUPerMsgMs of a run).
			OwnCPUPerMsgMs: cpuPerByte * float64(sh.Packages*sh.packageBytes()) * 1000,
		}
		if err := writeResult(*out, r); err != nil {
			return err
		}
	}
	for _, name := range shapeNames() {
		sh := shapes[name]
		sign := rates["sign_per_s"]
		if sh.Key == "p256" {
			sign = rates["sign_p256_per_s"]
		}
		if sh.ClientEncrypted || sign == 0 {
			// Split without decrypting: no HSM work to floor it (the wire floor bounds it).
			continue
		}
		per := map[string]float64{
			"sign":    1000 / sign,
			"cek":     1000 / rates["cek_per_s"],
			"encrypt": 1000 * float64(sh.Size+signedOverhead) / rates["encrypt_bytes_per_s"],
			"wrap":    1000 * float64(sh.wraps()) / rates["wrap_per_s"],
		}
		var total float64
		for _, v := range per {
			total += v
		}
		r := Result{
			Kind: "floor", Label: "hsm-floor", Shape: name, Parallel: *parallel, Rates: rates, FloorPerOp: per,
			Messages: 1, Packages: sh.Packages, Seconds: total / 1000,
			MsgPerSec: 1000 / total, PkgPerSec: 1000 / total * float64(sh.Packages),
			LoadBefore: load, LoadAfter: loadavg(),
		}
		if err := writeResult(*out, r); err != nil {
			return err
		}
	}
	return nil
}

// measureSign times signatures with signer as measureRates does.
func measureSign(signer crypto.Signer, parallel int, each time.Duration) (float64, error) {
	digest := sha256.Sum256([]byte("floor"))
	var calls atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(each)
	for range parallel {
		wg.Go(func() {
			for time.Now().Before(stop) {
				if _, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, fmt.Errorf("failed to time P-256 signatures: %w", err)
	}
	return float64(calls.Load()) / time.Since(start).Seconds(), nil
}

// measureRates times each HSM operation the appliance needs per message, with parallel
// goroutines, and returns aggregate rates: operations per second, and bytes per second for
// encryption.
func measureRates(ctx context.Context, tok *hsm.Token, signer crypto.Signer, pub *rsa.PublicKey, parallel int, each time.Duration) (map[string]float64, error) {
	digest := sha256.Sum256([]byte("floor"))
	chunk := make([]byte, 1<<20)
	rand.Read(chunk)
	iv := make([]byte, 16)

	key, err := tok.GenerateCEK(ctx)
	if err != nil {
		return nil, err
	}
	defer key.Destroy(ctx)

	ops := []struct {
		name  string
		units float64 // per call
		f     func() error
	}{
		{"sign_per_s", 1, func() error {
			_, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
			return err
		}},
		{"cek_per_s", 1, func() error {
			// Generation and destruction: the appliance destroys each message's key.
			k, err := tok.GenerateCEK(ctx)
			if err != nil {
				return err
			}
			return k.Destroy(ctx)
		}},
		{"encrypt_bytes_per_s", float64(len(chunk)), func() error {
			return key.EncryptCBC(ctx, iv, bytes.NewReader(chunk), io.Discard)
		}},
		{"wrap_per_s", 1, func() error {
			_, err := key.WrapRSA(ctx, pub, 0)
			return err
		}},
	}
	rates := map[string]float64{}
	for _, op := range ops {
		if err := op.f(); err != nil { // warm up, and fail early
			return nil, fmt.Errorf("failed to time %s: %w", op.name, err)
		}
		var calls atomic.Int64
		var firstErr atomic.Value
		var wg sync.WaitGroup
		start := time.Now()
		stop := start.Add(each)
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(stop) {
					if err := op.f(); err != nil {
						firstErr.CompareAndSwap(nil, err)
						return
					}
					calls.Add(1)
				}
			}()
		}
		wg.Wait()
		if err, _ := firstErr.Load().(error); err != nil {
			return nil, fmt.Errorf("failed to time %s: %w", op.name, err)
		}
		rates[op.name] = float64(calls.Load()) * op.units / time.Since(start).Seconds()
	}
	return rates, nil
}
