package smime_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"appliance/smime"
)

// TestClassifyCorpus holds the classifier to the class of each FuzzClassify seed made by real
// tools (OpenSSL's EnvelopedData, AuthEnvelopedData and streamed BER signed-data, not
// hand-built DER): a seed named refused-* is refused with the reason listed, signed-over-encrypted-*
// is signed over its envelope and tells the sender to sign inside the encryption,
// client-encrypted-* is split exactly. Seeds with any other name are run by the fuzz target only.
func TestClassifyCorpus(t *testing.T) {
	reasons := map[string]string{
		"refused-envelope-in-forwarded-message":     "part 2.1 holds enveloped-data that is not the whole message",
		"refused-envelope-in-multipart-mixed":       "part 2 holds enveloped-data that is not the whole message",
		"refused-envelope-octet-stream-p7m":         "part 2 holds enveloped-data that is not the whole message",
		"refused-envelope-labelled-text":            "labelled text/plain but holds enveloped-data",
		"refused-envelope-unknown-smime-type":       `unknown smime-type "x-private"`,
		"refused-envelope-uuencoded-in-text":        "holds enveloped-data uuencoded",
		"refused-two-content-type-fields":           "2 Content-Type fields",
		"refused-label-signed-data-holds-enveloped": "labelled smime-type=signed-data but holds enveloped-data",
	}
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzClassify", "*"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, file := range files {
		name := filepath.Base(file)
		var want smime.Class
		switch {
		case strings.HasPrefix(name, "refused-"):
			want = smime.Refused
		case strings.HasPrefix(name, "signed-over-encrypted-"):
			want = smime.SignedOverEncrypted
		case strings.HasPrefix(name, "client-encrypted-"):
			want = smime.ClientEncrypted
		default:
			continue
		}
		seen++
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			msg := corpusBytes(t, b)
			c := smime.Classify(msg)
			if c.Class != want {
				t.Fatalf("class %v (%s), want %v", c.Class, c.Reason, want)
			}
			switch want {
			case smime.Refused:
				r, ok := reasons[name]
				if !ok {
					t.Fatalf("no reason listed for %s", name)
				}
				if !strings.Contains(c.Reason, r) {
					t.Errorf("reason %q, want it to say %q", c.Reason, r)
				}
			case smime.SignedOverEncrypted:
				if !strings.Contains(c.Reason, "sign inside the encryption") || len(c.Envelope) == 0 {
					t.Errorf("reason %q, envelope %d bytes: want the advice and the envelope", c.Reason, len(c.Envelope))
				}
			case smime.ClientEncrypted:
				if len(c.Envelope) == 0 {
					t.Error("no envelope")
				}
			}
		})
	}
	if seen < len(reasons)+4 {
		t.Errorf("%d classified seeds, want at least %d", seen, len(reasons)+4)
	}
}

// corpusBytes reads the one []byte value of a "go test fuzz v1" file.
func corpusBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	lines := strings.SplitN(strings.TrimSpace(string(b)), "\n", 2)
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatal("not a go test fuzz v1 file")
	}
	v := strings.TrimSpace(lines[1])
	if !strings.HasPrefix(v, "[]byte(") || !strings.HasSuffix(v, ")") {
		t.Fatalf("not one []byte value: %.40s", v)
	}
	s, err := strconv.Unquote(v[len("[]byte(") : len(v)-1])
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}
