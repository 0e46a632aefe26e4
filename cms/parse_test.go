package cms

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"appliance/cms/oid"
)

func seed(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// withRIs builds an EnvelopedData around the encryptedContentInfo of base with the given raw
// RecipientInfos, as a hostile or unusual sender might.
func withRIs(t testing.TB, base *Enveloped, version int, ris ...[]byte) []byte {
	t.Helper()
	return assemble(oid.EnvelopedData, version, nil, ris, [][]byte{base.EncryptedContentInfo}).Bytes()
}

func TestParseHostile(t *testing.T) {
	good := seed(t, "enveloped-openssl-der-aes256-cbc.der")
	base, err := ParseEnveloped(good)
	if err != nil {
		t.Fatal(err)
	}
	ri := base.RecipientInfos[0].Raw
	many := func(n int) [][]byte {
		out := make([][]byte, n)
		for i := range out {
			out[i] = ri
		}
		return out
	}
	nested := append(bytes.Repeat([]byte{0xa1, 0x80}, 200), bytes.Repeat([]byte{0, 0}, 200)...)
	kari := []byte{0xa1, 0x05, 0x02, 0x01, 0x03, 0x30, 0x00}
	ori := []byte{0xa4, 0x03, 0x06, 0x01, 0x2a}
	pwri := []byte{0xa3, 0x03, 0x02, 0x01, 0x00}
	ktriV1 := bytes.Clone(ri)
	ktriV1[headerLenOf(ktriV1)+2] = 1 // version INTEGER 0 -> 1 with issuerAndSerialNumber
	bigLen := bytes.Clone(good)
	bigLen[1], bigLen[2], bigLen[3] = 0x84, 0x7f, 0xff

	tests := []struct {
		name    string
		data    []byte
		opts    ParseOptions
		wantErr error
		wantRIs int
		kinds   []RecipientKind
	}{
		{name: "ok openssl der", data: good, wantRIs: 2},
		{name: "ok 10000 recipientinfos", data: withRIs(t, base, 0, many(10000)...), wantRIs: 10000},
		{name: "fail 10001 recipientinfos", data: withRIs(t, base, 0, many(10001)...), wantErr: ErrTooManyRecipients},
		{name: "fail over a configured limit", data: withRIs(t, base, 0, many(3)...), opts: ParseOptions{MaxRecipientInfos: 2}, wantErr: ErrTooManyRecipients},
		{name: "ok opaque keyagree, other and password entries", data: withRIs(t, base, 3, ri, kari, ori, pwri), wantRIs: 4,
			kinds: []RecipientKind{KeyTrans, KeyAgree, Other, Password}},
		{name: "fail keytrans v1 with issuerAndSerialNumber", data: withRIs(t, base, 0, ktriV1), wantErr: ErrUnsupported},
		{name: "fail unknown recipientinfo tag", data: withRIs(t, base, 0, []byte{0xa7, 0x00}), wantErr: ErrMalformed},
		{name: "fail no recipientinfos", data: withRIs(t, base, 0), wantErr: ErrMalformed},
		{name: "fail deep indefinite nesting", data: withRIs(t, base, 0, nested), wantErr: ErrMalformed},
		{name: "fail empty", data: nil, wantErr: ErrMalformed},
		{name: "fail trailing data", data: append(bytes.Clone(good), 0), wantErr: ErrMalformed},
		{name: "fail length beyond input", data: bigLen, wantErr: ErrMalformed},
		{name: "fail indefinite primitive", data: []byte{0x04, 0x80, 0, 0}, wantErr: ErrMalformed},
		{name: "fail signed data", data: seed(t, "signed-ours-rsa.der"), wantErr: ErrUnsupported},
		{name: "fail not a sequence", data: []byte{0x04, 0x01, 0x00}, wantErr: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := ParseEnvelopedWith(tt.data, tt.opts)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "failed to parse enveloped data: ") {
					t.Fatalf("error %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(e.RecipientInfos) != tt.wantRIs {
				t.Fatalf("%d recipientinfos", len(e.RecipientInfos))
			}
			for i, k := range tt.kinds {
				if e.RecipientInfos[i].Kind != k {
					t.Fatalf("#%d is %v, want %v", i, e.RecipientInfos[i].Kind, k)
				}
			}
			// Opaque entries survive re-encoding byte for byte.
			enc, err := e.WithRecipients(e.RecipientInfos[len(e.RecipientInfos)-1:])
			if err != nil {
				t.Fatal(err)
			}
			back, err := ParseEnveloped(enc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.RecipientInfos[0].Raw, e.RecipientInfos[len(e.RecipientInfos)-1].Raw) {
				t.Fatal("recipientinfo changed")
			}
		})
	}
	t.Run("fail every truncation", func(t *testing.T) {
		for _, name := range []string{"enveloped-openssl-stream-ber-aes-256-gcm-keyid.der", "enveloped-ours-gcm-issuer-oaep-sha256.der"} {
			data := seed(t, name)
			for n := range len(data) {
				if _, err := ParseEnveloped(data[:n]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s cut at %d: %v", name, n, err)
				}
			}
		}
	})
}

// TestParseAllocation checks that memory stays proportional to the input on the largest
// message the limit admits.
func TestParseAllocation(t *testing.T) {
	base, err := ParseEnveloped(seed(t, "enveloped-openssl-der-aes256-cbc.der"))
	if err != nil {
		t.Fatal(err)
	}
	ris := make([][]byte, DefaultMaxRecipientInfos)
	for i := range ris {
		ris[i] = base.RecipientInfos[0].Raw
	}
	data := withRIs(t, base, 0, ris...)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := ParseEnveloped(data); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*uint64(len(data)) {
		t.Fatalf("parsing %d bytes allocated %d", len(data), alloc)
	}
}

func TestWithRecipientsVersion(t *testing.T) {
	// Dropping the only v2 (SKI) entry lowers EnvelopedData's version to 0, as RFC 5652 6.1 asks.
	base, err := ParseEnveloped(seed(t, "enveloped-openssl-keyid.der"))
	if err != nil {
		t.Fatal(err)
	}
	if base.Version != 2 {
		t.Fatalf("openssl -keyid made version %d", base.Version)
	}
	v0 := append(bytes.Clone(base.RecipientInfos[0].Raw[:0]), seedRI(t, "enveloped-openssl-der-aes256-cbc.der")...)
	data := withRIs(t, base, 2, base.RecipientInfos[0].Raw, v0)
	e, err := ParseEnveloped(data)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		keep []*RecipientInfo
		want int
	}{
		{"ok v0 only", e.RecipientInfos[1:], 0},
		{"ok v2 kept", e.RecipientInfos[:1], 2},
		{"ok both", e.RecipientInfos, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, err := e.WithRecipients(tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseEnveloped(enc.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != tt.want {
				t.Fatalf("version %d, want %d", got.Version, tt.want)
			}
		})
	}
	t.Run("fail empty subset", func(t *testing.T) {
		if _, err := e.WithRecipients(nil); err == nil {
			t.Fatal("re-encoded without recipients")
		}
	})
}

func seedRI(t testing.TB, name string) []byte {
	e, err := ParseEnveloped(seed(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return e.RecipientInfos[0].Raw
}

func seeds(f *testing.F, prefix string) {
	names, err := filepath.Glob(filepath.Join("testdata", prefix+"*.der"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no %s seeds: %v", prefix, err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseEnveloped(f *testing.F) {
	seeds(f, "enveloped-")
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03, 0xa0, 0x80, 0x30, 0x80, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEnvelopedWith(data, ParseOptions{MaxRecipientInfos: 100})
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrTooManyRecipients) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		for _, ri := range e.RecipientInfos {
			ri.OAEPHash()
		}
		e.EncryptedContent()
		e.Tag()
		enc, err := e.WithRecipients(e.RecipientInfos)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseEnveloped(enc.Bytes())
		if err != nil {
			t.Fatalf("re-encoding does not parse: %v", err)
		}
		if len(again.RecipientInfos) != len(e.RecipientInfos) || !bytes.Equal(again.EncryptedContentInfo, e.EncryptedContentInfo) ||
			!bytes.Equal(again.MAC, e.MAC) || !bytes.Equal(again.AuthAttrs, e.AuthAttrs) {
			t.Fatal("re-encoding changed the envelope")
		}
	})
}

func FuzzParseSigned(f *testing.F) {
	seeds(f, "signed-")
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSigned(data)
		if err != nil {
			return
		}
		s.Verify(VerifyOptions{Content: []byte("x")})
	})
}
