package smime_test

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"appliance/cms"
	"appliance/smime"
)

// TestClassifyAs: for every classifier seed and a few messages of each class, classifying
// again with the class the first classification recorded (as the pipeline does with the class
// the check at end of DATA kept in the envelope) gives what Classify gives: the same class,
// envelope and package, so nothing the pipeline does changes. A recorded class the message does
// not bear out is not trusted: the message is classified in full.
func TestClassifyAs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzClassify", "*"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string][]byte{
		"plain":        []byte("From: a@example.test\r\nSubject: x\r\n\r\nhello\r\n"),
		"plain signed": []byte("From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"),
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msgs[filepath.Base(file)] = corpusBytes(t, b)
	}
	clientEncrypted := 0
	for name, msg := range msgs {
		t.Run(name, func(t *testing.T) {
			want := smime.Classify(msg)
			got := smime.ClassifyAs(msg, want.Class.String())
			if got.Class != want.Class || got.EnvelopeType != want.EnvelopeType || !bytes.Equal(got.Envelope, want.Envelope) || got.Reason != want.Reason {
				t.Fatalf("ClassifyAs %v %q (%d bytes of envelope), Classify %v %q (%d bytes)", got.Class, got.EnvelopeType, len(got.Envelope), want.Class, want.EnvelopeType, len(want.Envelope))
			}
			if want.Class == smime.ClientEncrypted {
				clientEncrypted++
				gp, gerr := got.Package(msg)
				wp, werr := want.Package(msg)
				if gerr != nil || werr != nil || !reflect.DeepEqual(gp, wp) {
					t.Errorf("Package: %+v, %v; want %+v, %v", gp, gerr, wp, werr)
				}
			}
			// A class the message does not bear out.
			for _, wrong := range []smime.Class{smime.ClientEncrypted, smime.Refused, smime.SignedOverEncrypted} {
				if wrong == want.Class {
					continue
				}
				if c := smime.ClassifyAs(msg, wrong.String()); c.Class != want.Class {
					t.Errorf("recorded %v: classified %v, want %v", wrong, c.Class, want.Class)
				}
			}
		})
	}
	if clientEncrypted == 0 {
		t.Error("no client-encrypted message among the seeds")
	}
}

// TestClassifyHead: the check's reading of a client's envelope from its start never answers
// otherwise than Classify: where it answers (ok), Classify finds the same client-encrypted
// envelope with the same RecipientInfos, content-encryption algorithm and package header; for
// every other seed, and for the client's envelope cut short anywhere before its RecipientInfos
// end, it leaves the message to Classify.
func TestClassifyHead(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzClassify", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var enc []byte
	answered := 0
	check := func(t *testing.T, msg []byte) bool {
		t.Helper()
		c, header, ok := smime.ClassifyHead(bytes.NewReader(msg), int64(len(msg)))
		if !ok {
			return false
		}
		full := smime.Classify(msg)
		if full.Class != smime.ClientEncrypted || c.Class != full.Class || c.EnvelopeType != full.EnvelopeType || !bytes.HasPrefix(msg, header) {
			t.Fatalf("ClassifyHead %v %s, Classify %v %s (%s)", c.Class, c.EnvelopeType, full.Class, full.EnvelopeType, full.Reason)
		}
		head, err := cms.ParseEnveloped(c.Envelope)
		if err != nil {
			t.Fatalf("the head does not parse: %v", err)
		}
		whole, err := cms.ParseEnveloped(full.Envelope)
		if err != nil {
			// Cut in its ciphertext: Classify found the same envelope, which splitting will
			// find unreadable; its RecipientInfos are whole in the head.
			answered++
			return true
		}
		if len(head.RecipientInfos) != len(whole.RecipientInfos) || len(head.RecipientInfos) == 0 ||
			!head.ContentEncryptionAlgorithm.Algorithm.Equal(whole.ContentEncryptionAlgorithm.Algorithm) {
			t.Fatalf("head: %d RecipientInfos, %v; whole: %d, %v", len(head.RecipientInfos), head.ContentEncryptionAlgorithm.Algorithm, len(whole.RecipientInfos), whole.ContentEncryptionAlgorithm.Algorithm)
		}
		for i := range head.RecipientInfos {
			if !bytes.Equal(head.RecipientInfos[i].Raw, whole.RecipientInfos[i].Raw) {
				t.Fatalf("RecipientInfo %d differs", i)
			}
		}
		hp, err1 := c.Package(header)
		wp, err2 := full.Package(msg)
		if err1 != nil || err2 != nil || !reflect.DeepEqual(hp.Header, wp.Header) || hp.SMIMEType != wp.SMIMEType || hp.RawSMIMEType != wp.RawSMIMEType {
			t.Fatalf("package from the head %+v %v, from the message %+v %v", hp, err1, wp, err2)
		}
		answered++
		return true
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		msg := corpusBytes(t, b)
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			ok := check(t, msg)
			if strings.HasPrefix(name, "client-encrypted-") != ok {
				t.Errorf("answered %v", ok)
			}
			if strings.HasPrefix(name, "client-encrypted-") {
				enc = msg
			}
		})
	}
	if enc == nil {
		t.Fatal("no client-encrypted seed")
	}
	full := smime.Classify(enc)
	whole, err := cms.ParseEnveloped(full.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	risEnd := bytes.Index(full.Envelope, whole.EncryptedContentInfo) // the DER after the RecipientInfos
	cutAnswered := 0
	for n := 1; n < len(enc); n++ {
		cut := enc[:n]
		c := smime.Classify(cut)
		if check(t, cut) {
			cutAnswered++
			// Answered from a cut message: the cut is past what the head needs.
			if c.Class != smime.ClientEncrypted {
				t.Fatalf("cut at %d: answered, Classify says %v", n, c.Class)
			}
			hc, _, _ := smime.ClassifyHead(bytes.NewReader(cut), int64(len(cut)))
			head, err := cms.ParseEnveloped(hc.Envelope)
			if err != nil || len(head.RecipientInfos) != len(whole.RecipientInfos) {
				t.Fatalf("cut at %d: %v", n, err)
			}
			for i := range head.RecipientInfos {
				if !bytes.Equal(head.RecipientInfos[i].Raw, whole.RecipientInfos[i].Raw) {
					t.Fatalf("cut at %d: RecipientInfo %d differs from the whole message's", n, i)
				}
			}
		}
	}
	if cutAnswered == 0 || risEnd <= 0 {
		t.Errorf("no cut message answered (%d), or no content after the RecipientInfos (%d)", cutAnswered, risEnd)
	}
}

// FuzzClassifyHead: on any message, ClassifyHead answers only where Classify finds a
// client-encrypted envelope of the same type, and what it returns leads to the same decision.
func FuzzClassifyHead(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzClassify", "*"))
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(corpusBytes(f, b))
		}
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, header, ok := smime.ClassifyHead(bytes.NewReader(msg), int64(len(msg)))
		if !ok {
			return
		}
		full := smime.Classify(msg)
		if full.Class != smime.ClientEncrypted || c.EnvelopeType != full.EnvelopeType || !bytes.HasPrefix(msg, header) {
			t.Fatalf("ClassifyHead %s, Classify %v %s (%s)", c.EnvelopeType, full.Class, full.EnvelopeType, full.Reason)
		}
		// Classify only finds the envelope; its RecipientInfos are read when the split is
		// planned. The head must lead there to the same answer: refused where the whole
		// envelope's RecipientInfos do not parse, the same RecipientInfos where they do. (A
		// whole envelope broken only after its RecipientInfos is refused when it is sealed.)
		head, herr := cms.ParseEnveloped(c.Envelope)
		whole, werr := cms.ParseEnveloped(full.Envelope)
		switch {
		case herr != nil && werr == nil:
			t.Fatalf("the head does not parse (%v), the whole envelope does", herr)
		case herr == nil && werr == nil:
			if len(head.RecipientInfos) != len(whole.RecipientInfos) {
				t.Fatalf("%d RecipientInfos in the head, %d in the whole envelope", len(head.RecipientInfos), len(whole.RecipientInfos))
			}
			for i := range head.RecipientInfos {
				if !bytes.Equal(head.RecipientInfos[i].Raw, whole.RecipientInfos[i].Raw) {
					t.Fatalf("RecipientInfo %d differs from the whole envelope's", i)
				}
			}
		}
		if _, err := c.Package(header); err != nil {
			t.Fatal(err)
		}
	})
}

// TestClassifyHeadEndless: an envelope whose RecipientInfos run on past what the check decodes
// of its start is left to Classify.
func TestClassifyHeadEndless(t *testing.T) {
	der := []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
		0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x00, 0x31, 0x80}
	der = append(der, bytes.Repeat([]byte{0x04, 0x00}, (smime.MaxEnvelopeHead+1<<20)/2)...)
	msg := "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString(der) + "\r\n"
	if _, _, ok := smime.ClassifyHead(strings.NewReader(msg), int64(len(msg))); ok {
		t.Fatal("answered for RecipientInfos longer than it decodes")
	}
}
