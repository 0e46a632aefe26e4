package smime

import (
	"appliance/internal/softhsmtest"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"io"
	"runtime"
	"testing"
	"time"

	"appliance/cms"
)

// testListCert is a throwaway self-signed list certificate for tests without the PKI.
func testListCert(tb testing.TB) (*x509.Certificate, *rsa.PrivateKey) {
	return softhsmtest.SelfSigned(tb, "list")
}

// TestKeepSignature: a member's package keeps of its signature only what differs from the
// expansion's first (the messageDigest and the signature value), and writes it back whole.
func TestKeepSignature(t *testing.T) {
	cert, key := testListCert(t)
	when := time.Now()
	tests := []struct {
		name     string
		chain    []*x509.Certificate
		sign     func(t *testing.T, i int) []byte
		wantKind sigKind
		maxOwn   int // bytes a member keeps, the first excepted
	}{
		{"ok same attributes patch the template", []*x509.Certificate{cert}, func(t *testing.T, i int) []byte {
			sig, err := cms.Sign(key, []*x509.Certificate{cert}, []byte{byte(i)}, cms.SignOptions{Detached: true, SigningTime: when})
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}, sigPatch, 400},
		{"ok other signing times keep the signature less the certificates", []*x509.Certificate{cert}, func(t *testing.T, i int) []byte {
			sig, err := cms.Sign(key, []*x509.Certificate{cert}, []byte{byte(i)}, cms.SignOptions{Detached: true,
				SigningTime: when.Add(time.Duration(i) * time.Second), Extra: []cms.Attribute{{Type: []int{1, 2, 3}, Value: append([]byte{4, byte(i)}, make([]byte, i)...)}}})
			if err != nil {
				t.Fatal(err)
			}
			return sig
		}, sigSplit, 2000},
		{"fail no certificates to take out", []*x509.Certificate{cert}, func(t *testing.T, i int) []byte {
			return bytes.Repeat([]byte{byte(i)}, 100)
		}, sigWhole, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := &ListParts{chain: tt.chain}
			var scratch []byte
			for i := range 4 {
				sig := tt.sign(t, i)
				ms := sp.keep(sig)
				if i > 0 && (ms.kind != tt.wantKind || len(ms.b) > tt.maxOwn) {
					t.Fatalf("signature %d kept as kind %d in %d bytes, want kind %d in at most %d", i, ms.kind, len(ms.b), tt.wantKind, tt.maxOwn)
				}
				if ms.kind != sigWhole && bytes.Contains(ms.b, cert.Raw) {
					t.Fatal("a member keeps the certificate")
				}
				var got, want bytes.Buffer
				if err := sp.writeSig(&got, ms, &scratch); err != nil {
					t.Fatal(err)
				}
				enc := NewBase64Writer(&want)
				enc.Write(sig)
				enc.Close()
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("signature %d written back differs", i)
				}
			}
		})
	}
}

func FuzzMakePatch(f *testing.F) {
	f.Add([]byte("template bytes here"), []byte("templatX bytes herE"), 5)
	f.Add([]byte{}, []byte{}, 0)
	f.Add(bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{2}, 300), 150)
	f.Fuzz(func(t *testing.T, tmpl, b []byte, cut int) {
		if len(b) != len(tmpl) {
			return
		}
		cut = max(0, min(cut, len(b)))
		p, ok := makePatch(tmpl, b[:cut], b[cut:])
		if !ok {
			return
		}
		if len(p) >= len(tmpl) && len(tmpl) > 0 {
			t.Fatalf("a %d-byte patch for %d bytes", len(p), len(tmpl))
		}
		got := bytes.Clone(tmpl)
		for len(p) >= 4 {
			off, n := int(p[0])<<8|int(p[1]), int(p[2])<<8|int(p[3])
			copy(got[off:off+n], p[4:4+n])
			p = p[4+n:]
		}
		if len(p) != 0 || !bytes.Equal(got, b) {
			t.Fatal("patch does not make the bytes")
		}
	})
}

// envelopeFor assembles an envelope of ct with one RecipientInfo of riLen bytes (a stand-in:
// the bytes are not read), as a member's would be.
func envelopeFor(tb testing.TB, ct []byte, riLen int) *cms.Encoded {
	tb.Helper()
	raw := []byte{0x30, 0x82, byte(riLen >> 8), byte(riLen)}
	raw = append(raw, bytes.Repeat([]byte{0xa5}, riLen)...)
	ec := &cms.EncryptedContent{Algorithm: cms.AES256CBC, IV: bytes.Repeat([]byte{7}, 16), Ciphertext: ct}
	der, err := cms.Envelope(ec, []*cms.RecipientInfo{{Raw: raw}})
	if err != nil {
		tb.Fatal(err)
	}
	return der
}

// wantInner is a member's inner entity written the plain way: the whole DER through smime's
// base64 writer.
func wantInner(tb testing.TB, smimeType string, der *cms.Encoded) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.WriteString("Content-Type: application/pkcs7-mime; smime-type=" + smimeType + ";\r\n name=p7m\r\n" +
		"Content-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=p7m\r\n\r\n")
	enc := NewBase64Writer(&b)
	if _, err := der.WriteTo(enc); err != nil {
		tb.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

// checkMember writes one member's inner entity, digest and package from the shared parts and
// compares them with the plain way of writing them.
func checkMember(tb testing.TB, sp *ListParts, der *cms.Encoded, sig []byte) {
	tb.Helper()
	own, err := sp.envelope(der)
	if err != nil {
		tb.Fatal(err)
	}
	want := wantInner(tb, sp.smimeType, der)
	var got bytes.Buffer
	if err := sp.writeInner(&got, own); err != nil {
		tb.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		tb.Fatalf("inner entity of a %d-byte head differs from the plain encoding:\n%q\nwant\n%q", len(own), got.Bytes(), want)
	}
	d, err := sp.digest(own)
	if err != nil {
		tb.Fatal(err)
	}
	if sum := sha256.Sum256(want); !bytes.Equal(d, sum[:]) {
		tb.Fatal("digest is not the SHA-256 of the inner entity")
	}
	var full bytes.Buffer
	full.Write(sp.head)
	full.Write(want)
	full.Write(sp.sigHead)
	enc := NewBase64Writer(&full)
	enc.Write(sig)
	enc.Close()
	full.Write(sp.end)
	lp := &ListPackage{shared: sp, own: own, sig: sp.keep(sig)}
	var out bytes.Buffer
	n, err := lp.WriteTo(&out)
	if err != nil {
		tb.Fatal(err)
	}
	if n != int64(out.Len()) || !bytes.Equal(out.Bytes(), full.Bytes()) {
		tb.Fatalf("package (%d bytes, counted %d) differs from the plain encoding (%d bytes)", out.Len(), n, full.Len())
	}
}

// TestListPackageBytes: a member's package written from the shared parts (cached base64 of the
// tail, the member's head encoded on its own, the signature around the shared certificates) is
// byte for byte the plain encoding, whatever the head's length modulo a base64 line.
func TestListPackageBytes(t *testing.T) {
	cert, key := testListCert(t)
	tests := []struct {
		name string
		ct   int // ciphertext bytes
	}{
		{"ok large content", 5000},
		{"ok content of three lines", 3 * lineInput},
		{"ok content shorter than a line", 16},
		{"ok empty content", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := make([]byte, tt.ct)
			rand.Read(ct)
			sp := newListParts([]byte("Subject: x\r\n\r\n--b\r\n"), "b", TypeEnvelopedData, []*x509.Certificate{cert})
			for riLen := 200; riLen < 200+lineInput+2; riLen++ {
				sig, err := cms.Sign(key, sp.chain, []byte{byte(riLen)}, cms.SignOptions{Detached: true})
				if err != nil {
					t.Fatal(err)
				}
				checkMember(t, sp, envelopeFor(t, ct, riLen), sig)
			}
		})
	}
	t.Run("ok writing a package makes little garbage", func(t *testing.T) {
		// Writing 10,000 packages in a row is what drove the expansion's peak memory: the
		// garbage of each write must stay small beside the package (here 70 KB).
		sp := newListParts([]byte("Subject: x\r\n\r\n--b\r\n"), "b", TypeEnvelopedData, []*x509.Certificate{cert})
		der := envelopeFor(t, make([]byte, 50<<10), 300)
		own, err := sp.envelope(der)
		if err != nil {
			t.Fatal(err)
		}
		lp := &ListPackage{shared: sp, own: own, sig: memberSig{b: make([]byte, 900)}}
		lp.WriteTo(io.Discard) // the first write of a phase makes its lines
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const n = 50
		for range n {
			if _, err := lp.WriteTo(io.Discard); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		// About 400 bytes. Without the pools (a 16 KB write buffer and two 40 KB base64 blocks)
		// each write makes about 100 KB, without the write buffer's alone about 17 KB; 8 KB
		// leaves room for a garbage collection emptying the pools once during the loop. Under
		// -race, whose sync.Pool drops a quarter of what is put back at random, about a quarter
		// of the pooled buffers more: there 64 KB, which still catches lost base64 blocks.
		limit := uint64(8 << 10)
		if raceEnabled {
			limit = 64 << 10
		}
		if per := (after.TotalAlloc - before.TotalAlloc) / n; per > limit {
			t.Fatalf("writing a package allocates %d bytes, more than %d (race build %v)", per, limit, raceEnabled)
		}
	})
	t.Run("fail another content", func(t *testing.T) {
		sp := newListParts(nil, "b", TypeEnvelopedData, nil)
		if _, err := sp.envelope(envelopeFor(t, make([]byte, 100), 200)); err != nil {
			t.Fatal(err)
		}
		if _, err := sp.envelope(envelopeFor(t, make([]byte, 101), 200)); err == nil {
			t.Fatal("an envelope of other content shares the first one's tail")
		}
	})
}

func FuzzListPackageBytes(f *testing.F) {
	f.Add([]byte("ciphertext"), uint16(300), []byte("signature"))
	f.Add(bytes.Repeat([]byte{1}, 200), uint16(0), []byte{})
	f.Add([]byte{}, uint16(56), bytes.Repeat([]byte{2}, 57))
	f.Fuzz(func(t *testing.T, ct []byte, riLen uint16, sig []byte) {
		sp := newListParts([]byte("H\r\n"), "b", TypeAuthEnvelopedData, nil)
		checkMember(t, sp, envelopeFor(t, ct, int(riLen)%2000), sig)
	})
}
