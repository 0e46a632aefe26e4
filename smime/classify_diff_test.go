package smime_test

import (
	"encoding/base64"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"appliance/smime"
)

// sameAsReference fails t when Classify and the reference classifier (the classifier before
// issue 18's cheaper check of text parts, smime.RefClassify) answer msg differently in any
// field: class, reason, malformed, envelope and every layer found.
func sameAsReference(t testing.TB, msg []byte) {
	t.Helper()
	got, want := smime.Classify(msg), smime.RefClassify(msg)
	// encoding/base64 counts the offset of a bad character from the start of the piece it was
	// handed, which depends on how the text was read (the reference's filter reads 1 KB at a
	// time, the block decoder 64 KB and hands its last groups over): the offsets are left out.
	got.Reason = base64Offset.ReplaceAllString(got.Reason, "at input byte N")
	want.Reason = base64Offset.ReplaceAllString(want.Reason, "at input byte N")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Classify %v %q (malformed %v, %d layers), reference %v %q (malformed %v, %d layers)\n%.800q",
			got.Class, got.Reason, got.Malformed, len(got.Layers), want.Class, want.Reason, want.Malformed, len(want.Layers), msg)
	}
}

var base64Offset = regexp.MustCompile(`at input byte [0-9]+`)

// lines76 is s in CRLF lines of 76 characters, as encoders write base64.
func lines76(s string) string {
	var b strings.Builder
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	return b.String() + s + "\r\n"
}

// textShapes are text parts whose bodies are, or look like, base64 where no header says so:
// what the cheaper check of text parts reads differently from the reference, each under
// several transfer encodings and headers.
func textShapes(tb testing.TB) []string {
	env := fakeEnvelope(false)
	rnd := rand.New(rand.NewSource(27))
	noise := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	uu := uuencode("smime.p7m", env)
	bodies := []string{
		"",
		"\r\n",
		"  \t\r\n",
		"hello\r\n",
		"Hello, world.\r\n",
		"QUJD\r\n",
		"QUJDRA\r\n",
		"QUJDREU\r\n",
		"QUJDREVG\r\n",
		"QUJDREVGR\r\n", // 4n+1 characters: no decoder reads the last one
		"QUJD=REVG\r\n",
		"QUJDRA==\r\n",
		"QUJDREU=\r\n",
		"QUJDRA=\r\n",
		"QUJDRA===\r\n",
		"QUJD REVG\tR0hJ\r\n",
		"0123456789abcdef\r\n",
		"  \r\n0123456789abcdef\r\n",
		b64(env),
		"\r\n  " + b64(env),
		strings.TrimRight(strings.ReplaceAll(b64(env), "=", ""), "\r\n"),
		lines76(base64.StdEncoding.EncodeToString(env)),
		lines76(base64.RawStdEncoding.EncodeToString(env)),
		lines76(base64.StdEncoding.EncodeToString(env)) + "-- \r\nAlice\r\n",
		lines76(base64.StdEncoding.EncodeToString(noise(3000))),
		lines76(base64.RawStdEncoding.EncodeToString(noise(3001))),
		lines76(base64.RawStdEncoding.EncodeToString(noise(3002))),
		lines76(base64.StdEncoding.EncodeToString([]byte("a letter\r\n" + uu + "regards\r\n"))),
		lines76(base64.RawStdEncoding.EncodeToString([]byte("a letter\r\n" + uu))),
		lines76(base64.StdEncoding.EncodeToString([]byte("begin the letter here\r\nnothing else\r\n"))),
		lines76(base64.StdEncoding.EncodeToString(append(noise(5000), []byte("\n"+uu)...))),
		"a letter\r\n" + uu,
		"begin 644 QUJD\r\nQUJDREVG\r\nend\r\n",
		"  begin 644 x\r\n" + strings.TrimPrefix(uu, "begin 644 smime.p7m\r\n"),
		lines76(base64.StdEncoding.EncodeToString(noise(2000))) + "QUJD=\r\n" + lines76(base64.StdEncoding.EncodeToString(noise(2000))),
		lines76(base64.StdEncoding.EncodeToString(noise(2000))) + "!\r\n",
		string(env),
		"\r\n" + string(env),
	}
	var out []string
	for _, body := range bodies {
		for _, part := range []string{
			"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
			"Content-Type: text/plain\r\n\r\n",
			"Content-Transfer-Encoding: 7BIT \r\n\r\n",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
			"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n",
			"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\n",
			"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: 7bit\r\n\r\n",
			"Content-Type: application/pkcs7-mime\r\n\r\n",
			"Content-Type: application/pkcs7-signature\r\n\r\n",
		} {
			out = append(out, top+part+body)
			out = append(out, top+multipart("multipart/mixed", "m", text, part+body))
		}
	}
	return out
}

// TestClassifyReference: Classify answers as the reference classifier on every seed of
// FuzzClassify and FuzzClassifyHead, on text parts that are or look like base64 under every
// transfer encoding, on 4,000 generated structures (those of TestClassifyProperty, with the
// transfer encoding of their parts changed at random), and on "begin " of a uuencoded envelope
// decoded wherever it may cross from one piece Classify looks at to the next.
func TestClassifyReference(t *testing.T) {
	for _, dir := range []string{"FuzzClassify", "FuzzClassifyHead", "FuzzClassifyReference"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sameAsReference(t, corpusBytes(t, b))
		}
	}
	for _, msg := range textShapes(t) {
		sameAsReference(t, []byte(msg))
	}
	r := rand.New(rand.NewSource(18))
	ctes := []string{"Content-Transfer-Encoding: 7bit\r\n", "", "Content-Transfer-Encoding: 8bit\r\n", "Content-Transfer-Encoding: BASE64\r\n"}
	for i := 0; i < 4000; i++ {
		b := 0
		msg := top + generate(r, 0, &b).entity
		if r.Intn(2) == 0 {
			for _, c := range ctes {
				msg = strings.ReplaceAll(msg, c, ctes[r.Intn(len(ctes))])
			}
		}
		sameAsReference(t, []byte(msg))
	}
	// A uuencoded envelope decoded at offsets up to 13 KB, with 4,000 bytes more after it, in
	// lines of 76 characters (whole groups of 4) and of 75. (TestCleanBase64Begin puts "begin "
	// at every fifth offset, where it crosses from one piece Classify looks at to the next.)
	uu := uuencode("smime.p7m", fakeEnvelope(false))
	noise := make([]byte, 13000)
	r.Read(noise)
	for _, width := range []int{76, 75} {
		for k := 0; k <= len(noise); k += 101 {
			dec := append(append(append([]byte{}, noise[:k]...), "\n"+uu...), noise[:4000]...)
			enc := base64.RawStdEncoding.EncodeToString(dec)
			var body strings.Builder
			for len(enc) > width {
				body.WriteString(enc[:width] + "\r\n")
				enc = enc[width:]
			}
			body.WriteString(enc + "\r\n")
			msg := []byte(top + "Content-Type: text/plain\r\n\r\n" + body.String())
			got, want := smime.Classify(msg), smime.RefClassify(msg)
			if want.Class != smime.Refused || !reflect.DeepEqual(got, want) {
				t.Fatalf("uuencoded envelope at %d, lines of %d: Classify %v %q, reference %v %q", k, width, got.Class, got.Reason, want.Class, want.Reason)
			}
		}
	}
}

// FuzzClassifyReference: Classify answers as the reference classifier on any message.
func FuzzClassifyReference(f *testing.F) {
	for _, dir := range []string{"FuzzClassify", "FuzzClassifyHead"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(corpusBytes(f, b))
			}
		}
	}
	for _, msg := range textShapes(f) {
		if len(msg) < 4<<10 {
			f.Add([]byte(msg))
		}
	}
	env := fakeEnvelope(false)
	for _, s := range []string{
		top + text,
		top + envelopedEntity(env),
		top + p7m("application/pkcs7-mime; smime-type=signed-data", fakeSignedBER(oidData, []byte(envelopedEntity(env)))),
		top + signedMultipart(envelopedEntity(env), fakeSigned(oidData, nil)),
		top + "Content-Type: text/plain\r\n\r\n" + b64(env),
		top + "Content-Type: text/plain\r\n\r\n" + b64([]byte("x\n"+uuencode("a", env))),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		sameAsReference(t, msg)
	})
}

// FuzzClassifyTextReference: Classify answers as the reference classifier on a text part whose
// body is dec in base64 the way a client may write it (lines of any length, padding kept or
// not, blanks inside, a prefix of KBs of other bytes so that dec falls anywhere in the chunks
// Classify decodes), under a 7bit label or none.
func FuzzClassifyTextReference(f *testing.F) {
	env := fakeEnvelope(false)
	f.Add([]byte("hello"), uint8(76), uint8(0), uint16(0))
	f.Add(env, uint8(64), uint8(1), uint16(0))
	f.Add([]byte("x\n"+uuencode("a", env)), uint8(76), uint8(2), uint16(3000))
	f.Add([]byte("begin the day"), uint8(3), uint8(5), uint16(4095))
	f.Add(env, uint8(0), uint8(7), uint16(1))
	f.Fuzz(func(t *testing.T, dec []byte, lineLen, mode uint8, prefix uint16) {
		r := rand.New(rand.NewSource(int64(prefix)))
		pre := make([]byte, int(prefix)%(12<<10))
		r.Read(pre)
		enc := base64.StdEncoding.EncodeToString(append(pre, dec...))
		if mode&1 != 0 {
			enc = strings.TrimRight(enc, "=")
		}
		var body strings.Builder
		for n := max(1, int(lineLen)); len(enc) > 0; {
			k := min(n, len(enc))
			body.WriteString(enc[:k])
			enc = enc[k:]
			switch {
			case mode&2 != 0 && k%3 == 0:
				body.WriteString(" \t")
			case mode&4 != 0:
				body.WriteString("\n")
			default:
				body.WriteString("\r\n")
			}
		}
		hdr := "Content-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
		if mode&8 != 0 {
			hdr = "Content-Type: text/plain\r\n\r\n  \r\n"
		}
		sameAsReference(t, []byte(top+hdr+body.String()))
	})
}

// TestClassifyTextHoldsNoCopy: a 1 MB text part of base64's alphabet declared 7bit (the bench's
// load) is checked without a decoded copy of it: Classify allocates a few KB for it (the
// header's fields), where decoding it whole allocated 2 MB.
func TestClassifyTextHoldsNoCopy(t *testing.T) {
	msg := benchText(1 << 20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 5
	for range n {
		if c := smime.Classify(msg); c.Class != smime.Plain {
			t.Fatal(c.Class, c.Reason)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 64<<10 {
		t.Fatalf("Classify of a 1 MB text part allocates %d bytes", per)
	}
}
