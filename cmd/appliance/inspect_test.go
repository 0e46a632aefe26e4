package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"appliance/internal/interop"
)

// TestInspectSignedOverEncrypted: a message encrypted and then signed opaquely by OpenSSL (BER,
// indefinite lengths), as `openssl cms -encrypt ... | openssl cms -sign -nodetach` makes it,
// is shown layer by layer, the RecipientInfos of the envelope under the signature included.
func TestInspectSignedOverEncrypted(t *testing.T) {
	interop.Need(t, "openssl")
	dir := t.TempDir()
	openssl := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.Command("openssl", args...)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("openssl %v: %v", args, err)
		}
		return out
	}
	for _, u := range []string{"sender", "bob", "hidden"} {
		openssl(nil, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN="+u,
			"-keyout", filepath.Join(dir, u+".key"), "-out", filepath.Join(dir, u+".pem"))
	}
	body := []byte("Content-Type: text/plain\r\n\r\nfor bob, and someone bob must not know about\r\n")
	encrypted := openssl(body, "cms", "-encrypt", "-aes256", "-recip", filepath.Join(dir, "bob.pem"), "-recip", filepath.Join(dir, "hidden.pem"))
	for _, stream := range []bool{false, true} {
		args := []string{"cms", "-sign", "-nodetach", "-signer", filepath.Join(dir, "sender.pem"), "-inkey", filepath.Join(dir, "sender.key")}
		if stream {
			args = append(args, "-stream")
		}
		signed := openssl(encrypted, args...)
		name := filepath.Join(dir, "msg.eml")
		if err := os.WriteFile(name, append([]byte("From: sender@example.test\r\nTo: bob@example.test\r\n"), signed...), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if err := runInspect([]string{"-json", name}, &out, &errb); err != nil {
			t.Fatalf("stream=%v: inspect: %v\n%s", stream, err, errb.String())
		}
		var reports []inspectReport
		if err := json.Unmarshal(out.Bytes(), &reports); err != nil || len(reports) != 1 {
			t.Fatalf("stream=%v: %v\n%s", stream, err, out.String())
		}
		r := reports[0]
		if r.Kind != "signed-over-encrypted" || !strings.Contains(r.Refused, "sign inside the encryption") {
			t.Errorf("stream=%v: kind %q, refused %q", stream, r.Kind, r.Refused)
		}
		if len(r.Layers) != 2 || r.Layers[0].Type != "signed-data" || r.Layers[1].Type != "enveloped-data" || r.Layers[1].Path != "/signed" {
			t.Fatalf("stream=%v: layers %+v", stream, r.Layers)
		}
		if len(r.Layers[1].RIs) != 2 || len(r.Recipients) != 2 || r.Unknown != 2 {
			t.Errorf("stream=%v: %d recipientinfos under the signature (%d in all, %d unknown), want 2", stream, len(r.Layers[1].RIs), len(r.Recipients), r.Unknown)
		}
		out.Reset()
		if err := runInspect([]string{name}, &out, &errb); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "layer /signed: enveloped-data") || strings.Count(out.String(), "recipientinfo #") != 2 {
			t.Errorf("stream=%v: text report:\n%s", stream, out.String())
		}
	}
}
