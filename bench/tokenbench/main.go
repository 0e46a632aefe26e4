// Command tokenbench measures a remote token's floor for the benchmark of bench/tokens.sh: the
// per-message HSM operations driven straight through PKCS#11 (miekg/pkcs11, no appliance code),
// and the delaying link that stands for the network between the appliance and a network HSM.
//
//	tokenbench proxy -listen SOCK -target SOCK -delay D [-count FILE]
//	tokenbench floor -module M -token LABEL -pin-file F -key LABEL [-parallel N] [-each D] [-ops sign|sign,gen,wrap] [-rcpt-cert PEM]
//	tokenbench layer -module M -token LABEL -pin-file F -key LABEL [-parallel N] [-each D]
//
// proxy forwards a unix socket to another, delivering what the client sends D after it arrived
// (a delay line: requests in flight on one connection are not queued behind each other's delay),
// and the answers at once; D is the added round trip. With -count it keeps FILE holding the number
// of reads from clients so far (about one per PKCS#11 call: p11-kit sends a request in one
// write), so a script can tell the calls per message of what used the link. floor runs N goroutines, each with its own
// session, doing the per-message operations for -each, and prints one JSON line: operations per
// second for each, and messages per second with all of them (per message: one signature; with
// gen,wrap also one AES-256 key generation and one RSA wrap of it, the content work). layer signs
// the same way through the appliance's own token layer (hsm.Open with max_sessions N, a cached
// Signer for pkcs11:object=KEY, as the daemon signs), N goroutines: what the appliance's code
// makes of the link without the rest of the daemon competing for the CPU.
package main

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"appliance/hsm"

	"github.com/miekg/pkcs11"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tokenbench proxy|floor ...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = cmdProxy(os.Args[2:])
	case "floor":
		err = cmdFloor(os.Args[2:])
	case "layer":
		err = cmdLayer(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tokenbench:", err)
		os.Exit(1)
	}
}

func cmdProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	listen := fs.String("listen", "", "unix socket to listen on")
	target := fs.String("target", "", "unix socket of p11-kit server")
	delay := fs.Duration("delay", 0, "added round trip, applied to what the client sends")
	count := fs.String("count", "", "keep the number of client reads so far in this file")
	fs.Parse(args)
	if *count != "" {
		go func() {
			last := int64(-1)
			for range time.Tick(100 * time.Millisecond) {
				if n := reads.Load(); n != last {
					os.WriteFile(*count+".tmp", []byte(fmt.Sprintln(n)), 0o644)
					os.Rename(*count+".tmp", *count)
					last = n
				}
			}
		}()
	}
	os.Remove(*listen)
	ln, err := net.Listen("unix", *listen)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go link(c, *target, *delay)
	}
}

var reads atomic.Int64

type chunk struct {
	b  []byte
	at time.Time
}

func link(c net.Conn, target string, delay time.Duration) {
	defer c.Close()
	s, err := net.Dial("unix", target)
	if err != nil {
		return
	}
	defer s.Close()
	go func() {
		io.Copy(c, s)
		c.Close()
	}()
	q := make(chan chunk, 1024)
	go func() {
		defer s.Close()
		for ch := range q {
			if d := time.Until(ch.at); d > 0 {
				time.Sleep(d)
			}
			if _, err := s.Write(ch.b); err != nil {
				return
			}
		}
	}()
	defer close(q)
	for {
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		if n > 0 {
			reads.Add(1)
			q <- chunk{b: buf[:n], at: time.Now().Add(delay)}
		}
		if err != nil {
			return
		}
	}
}

type result struct {
	Parallel    int                `json:"parallel"`
	Ops         string             `json:"ops"`
	PerSecond   map[string]float64 `json:"per_second"`
	MsgsPerSec  float64            `json:"msgs_per_s"`
	CallsPerMsg int                `json:"calls_per_msg"` // PKCS#11 calls: C_SignInit and C_Sign (one call: third_party/pkcs11)
}

func cmdFloor(args []string) error {
	fs := flag.NewFlagSet("floor", flag.ExitOnError)
	module := fs.String("module", "", "PKCS#11 module")
	token := fs.String("token", "", "token label")
	pinFile := fs.String("pin-file", "", "file holding the user PIN")
	key := fs.String("key", "", "label of the signing key")
	parallel := fs.Int("parallel", 8, "goroutines, one session each")
	each := fs.Duration("each", 3*time.Second, "how long to run")
	ops := fs.String("ops", "sign", "sign, or sign,gen,wrap: the per-message operations")
	rcptCert := fs.String("rcpt-cert", "", "an RSA certificate (PEM) to wrap for, with -ops sign,gen,wrap")
	fs.Parse(args)
	pin, err := os.ReadFile(*pinFile)
	if err != nil {
		return err
	}
	content := *ops == "sign,gen,wrap"
	if !content && *ops != "sign" {
		return fmt.Errorf("-ops %q: want sign or sign,gen,wrap", *ops)
	}
	var rcpt *rsa.PublicKey
	if content {
		b, err := os.ReadFile(*rcptCert)
		if err != nil {
			return err
		}
		block, _ := pem.Decode(b)
		if block == nil {
			return errors.New("no PEM in -rcpt-cert")
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return err
		}
		rcpt = c.PublicKey.(*rsa.PublicKey)
	}

	p := pkcs11.New(*module)
	if p == nil {
		return fmt.Errorf("cannot load %s", *module)
	}
	if err := p.Initialize(); err != nil {
		return err
	}
	defer p.Finalize()
	slots, err := p.GetSlotList(true)
	if err != nil {
		return err
	}
	slot, found := uint(0), false
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err == nil && strings.TrimRight(ti.Label, " ") == *token {
			slot, found = s, true
			break
		}
	}
	if !found {
		return fmt.Errorf("no token %q", *token)
	}
	login, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return err
	}
	if err := p.Login(login, pkcs11.CKU_USER, strings.TrimSpace(string(pin))); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)) {
		return err
	}
	priv, err := find(p, login, pkcs11.CKO_PRIVATE_KEY, *key)
	if err != nil {
		return err
	}
	var wrapKey pkcs11.ObjectHandle
	if content {
		// The recipient's public key, imported once as a session object, as the appliance does
		// once per connection.
		wrapKey, err = p.CreateObject(login, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_MODULUS, rcpt.N.Bytes()),
			pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(rcpt.E)).Bytes()),
		})
		if err != nil {
			return fmt.Errorf("import the recipient's key: %w", err)
		}
	}
	digest := sha256.Sum256([]byte("floor"))
	// DigestInfo for SHA-256 + digest: what the appliance's signer hands CKM_RSA_PKCS.
	di := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, digest[:]...)
	cekTmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
	}
	var msgs, signs, gens, wraps atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *parallel; i++ {
		s, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer p.CloseSession(s)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// C_SignInit and C_Sign in one call into C, as the appliance signs.
				if _, err := p.InitAndSign(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, priv, di); err != nil {
					errs <- fmt.Errorf("C_SignInit, C_Sign: %w", err)
					return
				}
				signs.Add(1)
				if content {
					k, err := p.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, cekTmpl)
					if err != nil {
						errs <- fmt.Errorf("C_GenerateKey: %w", err)
						return
					}
					gens.Add(1)
					if _, err := p.WrapKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, wrapKey, k); err != nil {
						errs <- fmt.Errorf("C_WrapKey: %w", err)
						return
					}
					wraps.Add(1)
					p.DestroyObject(s, k)
				}
				msgs.Add(1)
			}
		}()
	}
	select {
	case <-time.After(*each):
	case err := <-errs:
		close(stop)
		wg.Wait()
		return err
	}
	close(stop)
	wg.Wait()
	secs := time.Since(start).Seconds()
	r := result{Parallel: *parallel, Ops: *ops, PerSecond: map[string]float64{"sign": float64(signs.Load()) / secs},
		MsgsPerSec: float64(msgs.Load()) / secs, CallsPerMsg: 2}
	if content {
		r.PerSecond["generate"] = float64(gens.Load()) / secs
		r.PerSecond["wrap"] = float64(wraps.Load()) / secs
		r.CallsPerMsg = 5 // and C_GenerateKey, C_WrapKey, C_DestroyObject
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func find(p *pkcs11.Ctx, s pkcs11.SessionHandle, class uint, label string) (pkcs11.ObjectHandle, error) {
	if err := p.FindObjectsInit(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class), pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}); err != nil {
		return 0, err
	}
	defer p.FindObjectsFinal(s)
	h, _, err := p.FindObjects(s, 1)
	if err != nil {
		return 0, err
	}
	if len(h) == 0 {
		return 0, fmt.Errorf("no object %q", label)
	}
	return h[0], nil
}

func cmdLayer(args []string) error {
	fs := flag.NewFlagSet("layer", flag.ExitOnError)
	module := fs.String("module", "", "PKCS#11 module")
	token := fs.String("token", "", "token label")
	pinFile := fs.String("pin-file", "", "file holding the user PIN")
	key := fs.String("key", "", "label of the signing key")
	parallel := fs.Int("parallel", 8, "goroutines, and the token's max_sessions unless -sessions")
	sessions := fs.Int("sessions", 0, "the token's max_sessions, when not -parallel (more goroutines than sessions, as the daemon's workers)")
	each := fs.Duration("each", 3*time.Second, "how long to run")
	fs.Parse(args)
	pin, err := os.ReadFile(*pinFile)
	if err != nil {
		return err
	}
	if *sessions == 0 {
		*sessions = *parallel
	}
	tok, err := hsm.Open(hsm.Config{Module: *module, TokenLabel: *token, Name: *token, Roles: hsm.RoleSign,
		PIN: strings.TrimSpace(string(pin)), MaxSessions: *sessions, PoolTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer tok.Close()
	ctx := context.Background()
	uri := "pkcs11:object=" + *key
	if _, err := tok.Signer(ctx, uri); err != nil {
		return err
	}
	digest := sha256.Sum256([]byte("layer"))
	var n atomic.Int64
	stop := make(chan struct{})
	errs := make(chan error, *parallel)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < *parallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Per message, as the daemon: the Signer for the sender's key URI (cached), then
				// one signature.
				s, err := tok.Signer(ctx, uri)
				if err == nil {
					_, err = s.Sign(rand.Reader, digest[:], crypto.SHA256)
				}
				if err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	select {
	case <-time.After(*each):
	case err := <-errs:
		close(stop)
		wg.Wait()
		return err
	}
	close(stop)
	wg.Wait()
	secs := time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(result{Parallel: *parallel, Ops: "sign (hsm layer)",
		PerSecond: map[string]float64{"sign": float64(n.Load()) / secs}, MsgsPerSec: float64(n.Load()) / secs, CallsPerMsg: 2})
}
