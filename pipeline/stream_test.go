package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"appliance/internal/lockedbuf"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/retry"
	"appliance/seal"
	"appliance/smime"
)

// A message the check at end of DATA classified ClientEncrypted is split from the spool without
// being read whole: its body is decoded into the envelope's DER as it is read. These tests hold
// that path to the one that reads the message whole (the same packages, byte for byte; the same
// refusals) and to what it is for (the message's base64 is never held).

// spooled is a spooled message body as the queue hands it over: sized, readable at an offset
// (the pipeline's way back to the whole message), and able to fail after failAfter bytes.
type spooled struct {
	*bytes.Reader
	readAts   int
	read      int64
	failAfter int64 // 0: never
}

func newSpooled(msg []byte) *spooled { return &spooled{Reader: bytes.NewReader(msg)} }

// whole is a body that can only be read through, sized: the pipeline reads such a body whole,
// as it did every message before it split from the spool.
type whole struct {
	io.Reader
	n int64
}

func newWhole(msg []byte) whole { return whole{bytes.NewReader(msg), int64(len(msg))} }

func (w whole) Size() int64 { return w.n }

func (s *spooled) Read(p []byte) (int, error) {
	if s.failAfter > 0 && s.read+int64(len(p)) > s.failAfter {
		p = p[:max(s.failAfter-s.read, 0)]
		if len(p) == 0 {
			return 0, errors.New("spool disk gone")
		}
	}
	n, err := s.Reader.Read(p)
	s.read += int64(n)
	return n, err
}

func (s *spooled) ReadAt(p []byte, off int64) (int, error) {
	s.readAts++
	return s.Reader.ReadAt(p, off)
}

// streamPipeline is the rig's pipeline with a fixed clock, so that two runs' packages (their
// Received fields) can be compared byte for byte.
func (r *rig) streamPipeline(t testing.TB) *pipeline.Pipeline {
	t.Helper()
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	p, err := pipeline.New(pipeline.Options{
		Directory: r.dir, Token: token{Token: r.tok}, Senders: []pipeline.Sender{r.alice},
		Hostname: "relay.example.test", Logger: slog.New(slog.NewTextHandler(&lockedbuf.Buffer{}, nil)),
		Now: func() time.Time { return at },
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// processed runs Process on msg as the queue would, with class as the check recorded it, and
// renders every package.
func processed(t *testing.T, p *pipeline.Pipeline, class string, body io.Reader) ([]rendered, error) {
	t.Helper()
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: rcptsOf("bob", "carol", "dave", "erin"), Class: class}
	s, err := p.Process(context.Background(), "S1", env, body)
	if err != nil {
		return nil, err
	}
	var out []rendered
	for _, pk := range s.Packages {
		var b bytes.Buffer
		if _, err := pk.Body.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, rendered{mode: pk.Mode, text: b.Bytes()})
	}
	return out, nil
}

type rendered struct {
	mode string // seal.Mode*
	text []byte
}

// sameAnswer fails t unless the streamed split answered as the whole read did: the same error,
// or the same packages. A package sealed anew (a plain message) differs in its keys and IVs,
// so of those the headers must match.
func sameAnswer(t *testing.T, streamed, ref []rendered, serr, rerr error) {
	t.Helper()
	if (rerr == nil) != (serr == nil) || (rerr != nil && rerr.Error() != serr.Error()) {
		t.Fatalf("streamed: %v; read whole: %v", serr, rerr)
	}
	if len(streamed) != len(ref) {
		t.Fatalf("%d packages streamed, %d read whole", len(streamed), len(ref))
	}
	for i := range ref {
		same := streamed[i].mode == ref[i].mode && bytes.Equal(streamed[i].text, ref[i].text)
		if ref[i].mode != seal.ModePassThrough {
			same = streamed[i].mode == ref[i].mode && bytes.Equal(smime.HeaderBlock(streamed[i].text), smime.HeaderBlock(ref[i].text))
		}
		if !same {
			t.Errorf("package %d differs:\nstreamed (%s):\n%.400s\nwhole (%s):\n%.400s", i, streamed[i].mode, streamed[i].text, ref[i].mode, ref[i].text)
		}
	}
}

func TestProcessStreamsClientEncrypted(t *testing.T) {
	r := setup(t)
	p := r.streamPipeline(t)
	all := []string{"alice", "bob", "carol", "dave", "erin"}
	for _, tt := range []struct {
		name string
		enc  encryptOpts
	}{
		{name: "cbc der"},
		{name: "gcm indefinite-length ber", enc: encryptOpts{gcm: true, stream: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := mimeMessage(toCc, envelopedType, r.encrypt(t, []byte(content), all, tt.enc))
			ref, err := processed(t, p, smime.ClientEncrypted.String(), newWhole(msg))
			if err != nil {
				t.Fatalf("read whole: %v", err)
			}
			body := newSpooled(msg)
			streamed, err := processed(t, p, smime.ClientEncrypted.String(), body)
			if err != nil {
				t.Fatalf("streamed: %v", err)
			}
			if body.readAts != 0 || body.read != int64(len(msg)) {
				t.Errorf("streamed: %d reads at an offset, %d of %d bytes read; want 0 and one pass", body.readAts, body.read, len(msg))
			}
			if len(ref) != 3 || ref[0].mode != seal.ModePassThrough {
				t.Fatalf("read whole: %d packages, the first %s; want 3 passthrough", len(ref), ref[0].mode)
			}
			sameAnswer(t, streamed, ref, nil, nil)
		})
	}
}

// TestProcessStreamFallsBack: what does not read as one clean base64 envelope is read whole and
// decided as any message is, whatever the check recorded.
func TestProcessStreamFallsBack(t *testing.T) {
	r := setup(t)
	p := r.streamPipeline(t)
	der := r.encrypt(t, []byte(content), []string{"alice", "bob", "carol", "dave", "erin"}, encryptOpts{})
	good := mimeMessage(toCc, envelopedType, der)
	bodyAt := bytes.Index(good, []byte("\r\n\r\n")) + 4
	long := append(append(append([]byte{}, good[:bodyAt+64]...), strings.Repeat("A", smime.DefaultMaxLineLength+8)...), good[bodyAt+64:]...)
	for _, tt := range []struct {
		name string
		msg  []byte
	}{
		{name: "plain text", msg: []byte(toCc + "Subject: hi\r\n\r\nNot encrypted at all.\r\n")},
		{name: "not base64", msg: bytes.Replace(good, []byte("Content-Transfer-Encoding: base64"), []byte("Content-Transfer-Encoding: quoted-printable"), 1)},
		{name: "a character outside base64", msg: append(append(append([]byte{}, good[:bodyAt+10]...), '*'), good[bodyAt+11:]...)},
		{name: "a line over the bound", msg: long},
		{name: "no header end", msg: []byte("From: alice@example.test\r\nSubject: cut")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ref, werr := processed(t, p, smime.ClientEncrypted.String(), newWhole(tt.msg))
			body := newSpooled(tt.msg)
			streamed, serr := processed(t, p, smime.ClientEncrypted.String(), body)
			if body.readAts == 0 {
				t.Errorf("not read again whole")
			}
			sameAnswer(t, streamed, ref, serr, werr)
		})
	}
}

// TestProcessStreamReadError: a spool that cannot be read mid-body is a temporary error (the
// message is retried), never an envelope cut short.
func TestProcessStreamReadError(t *testing.T) {
	r := setup(t)
	p := r.streamPipeline(t)
	msg := mimeMessage(toCc, envelopedType, r.encrypt(t, []byte(content), []string{"alice", "bob"}, encryptOpts{}))
	body := newSpooled(msg)
	body.failAfter = int64(len(msg) - 100)
	_, err := processed(t, p, smime.ClientEncrypted.String(), body)
	if err == nil || !retry.IsTemporary(err, false) {
		t.Fatalf("err = %v, want a temporary error", err)
	}
}

// TestProcessStreamHoldsNoBase64: splitting a 2 MB client-encrypted message from the spool
// allocates at least the message's size less than reading it whole does (its base64 is not
// held), and the packages are the same.
func TestProcessStreamHoldsNoBase64(t *testing.T) {
	r := setup(t)
	p := r.streamPipeline(t)
	big := []byte("Content-Type: text/plain\r\n\r\n" + strings.Repeat("The quarterly numbers, line after line.\r\n", 50000))
	msg := mimeMessage(toCc, envelopedType, r.encrypt(t, big, []string{"alice", "bob", "carol", "dave", "erin"}, encryptOpts{}))
	allocated := func(body io.Reader) uint64 {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		if _, err := processed(t, p, smime.ClientEncrypted.String(), body); err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return after.TotalAlloc - before.TotalAlloc
	}
	ref, streamed := allocated(newWhole(msg)), allocated(newSpooled(msg))
	if streamed+uint64(len(msg))*3/4 > ref {
		t.Errorf("streamed split allocated %d bytes, reading whole %d: want at least %d less (the message's base64)", streamed, ref, len(msg)*3/4)
	}
}

// FuzzProcessStream: whatever the message, splitting it off the spool as the check's class says
// answers as reading it whole does.
func FuzzProcessStream(f *testing.F) {
	r := setup(f)
	for _, o := range []encryptOpts{{}, {gcm: true, stream: true}} {
		msg := mimeMessage(toCc, envelopedType, r.encrypt(f, []byte(content), []string{"alice", "bob", "dave"}, o))
		f.Add(msg)
		f.Add(msg[:len(msg)-20])
	}
	f.Add([]byte(toCc + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n"))
	f.Add([]byte(toCc + "\r\nplain\r\n"))
	p := r.streamPipeline(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		ref, rerr := processed(t, p, smime.ClientEncrypted.String(), newWhole(msg))
		streamed, serr := processed(t, p, smime.ClientEncrypted.String(), newSpooled(msg))
		sameAnswer(t, streamed, ref, serr, rerr)
	})
}
