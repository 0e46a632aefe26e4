package smime_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

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
