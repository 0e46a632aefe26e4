package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	tests := []struct{ name, key, want string }{
		{"ok typo", "smtp.lisen", "listen"},
		{"ok swap", "smtp.hsotname", "hostname"},
		{"ok other table", "smtp.next_hop", "next_hop in [relay]"},
		{"ok array table", "sender.adress", "address"},
		{"ok table name", "smpt", "[smtp]"},
		{"ok nothing close", "smtp.frobnicate", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := suggest(tt.key); got != tt.want {
				t.Fatalf("suggest(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

// TestLoadErrorsNameFileAndLine: every problem of a file, at once, each with the file, its line
// and a suggestion for a misspelt key.
func TestLoadErrorsNameFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "appliance.toml")
	data := `[hsm]
module = "libsofthsm2.so"
token = "appliance"
pin_file = "pin"

[smtp]
lisen = "127.0.0.1:2525"
max_recipients = 0

[relay]
next_hop = "127.0.0.1:2526"

[spool]
dir = "spool"

[directory]
certs = "certs"
roots = "roots.pem"

[policy]
bcc = "everyone"

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "alice.pem"
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		path + ":7: smtp.lisen: unknown key: not a known setting; did you mean listen?",
		path + ":8: smtp.max_recipients: invalid value",
		path + ":21: policy.bcc: invalid value",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalid) {
		t.Errorf("error is not ErrUnknownKey and ErrInvalid: %v", err)
	}
	// Files checked after loading are located too.
	cfg, err := Load(strings.Replace(path, "appliance.toml", "ok.toml", 1))
	if err == nil {
		t.Fatalf("loaded a missing file: %+v", cfg)
	}
	ok := strings.NewReplacer("lisen", "listen", "max_recipients = 0", "max_recipients = 10", "everyone", "group").Replace(data)
	okPath := filepath.Join(filepath.Dir(path), "ok.toml")
	if err := os.WriteFile(okPath, []byte(ok), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = Load(okPath); err != nil {
		t.Fatal(err)
	}
	files := Locate(cfg.CheckFiles(), okPath)
	if files == nil || !strings.Contains(files.Error(), okPath+":4: hsm.pin_file: unusable file") ||
		!strings.Contains(files.Error(), okPath+":17: directory.certs: unusable file") {
		t.Fatalf("CheckFiles errors not located:\n%v", files)
	}
}
