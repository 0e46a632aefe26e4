package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestComplianceConfig(t *testing.T) {
	dkimOK := "[[dkim]]\ndomain = \"Example.TEST.\"\nselector = \"app1\"\nkey = \"pkcs11:token=appliance;object=dkim\"\n"
	tests := []struct {
		name    string
		section string
		wantErr error
		errText string
	}{
		{"ok absent", "", nil, ""},
		{"ok dkim", dkimOK, nil, ""},
		{"ok two selectors", dkimOK + strings.Replace(dkimOK, "app1", "app2", 1), nil, ""},
		{"ok audit", "[audit]\ndir = \"audit\"\nkey = \"pkcs11:object=audit\"\n", nil, ""},
		{"fail dkim same selector twice", dkimOK + strings.Replace(dkimOK, "Example.TEST.", "example.test", 1), ErrDuplicate, "dkim[1].selector"},
		{"fail dkim no key", "[[dkim]]\ndomain = \"example.test\"\nselector = \"s\"\n", ErrMissing, "dkim[0].key"},
		{"fail dkim bad selector", strings.Replace(dkimOK, "app1", "a b", 1), ErrInvalid, "dkim[0].selector"},
		{"fail dkim bad domain", strings.Replace(dkimOK, "Example.TEST.", "localhost", 1), ErrInvalid, "dkim[0].domain"},
		{"fail dkim other token", strings.Replace(dkimOK, "token=appliance", "token=other", 1), ErrInvalid, "dkim[0].key"},
		{"fail audit key without dir", "[audit]\nkey = \"pkcs11:object=audit\"\n", ErrMissing, "audit.dir"},
		{"fail audit small files", "[audit]\ndir = \"a\"\nmax_bytes = 100\n", ErrInvalid, "audit.max_bytes"},
		{"fail audit short age", "[audit]\ndir = \"a\"\nmax_age = \"1s\"\n", ErrInvalid, "audit.max_age"},
		{"ok journal", journalOK, nil, ""},
		{"fail journal without certs", strings.Replace(journalOK, "certs = [\"j.pem\"]\n", "", 1), ErrMissing, "journal.certs"},
		{"fail journal sender not a sender", strings.Replace(journalOK, "sender = \"alice@example.test\"", "sender = \"bob@example.test\"", 1), ErrInvalid, "journal.sender"},
		{"fail journal address is a sender", strings.Replace(journalOK, "address = \"journal@example.test\"", "address = \"Alice@EXAMPLE.test\"", 1), ErrConflict, "journal.address"},
		{"fail journal bad policy", journalOK + "policy = \"later\"\n", ErrInvalid, "journal.policy"},
		{"ok journal wait", journalOK + "policy = \"wait\"\n", nil, ""},
		{"fail journal keys without address", "[journal]\ncerts = [\"j.pem\"]\n", ErrMissing, "journal.address"},
		{"fail audit unknown key", "[audit]\ndir = \"a\"\nsign = true\n", ErrUnknownKey, "audit.sign"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(minimalForMetrics + tt.section))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("Parse: %v, want %v naming %q", err, tt.wantErr, tt.errText)
				}
				var ce *Error
				if !errors.As(err, &ce) || ce.Line == 0 {
					t.Errorf("error %v does not name a line", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(tt.section, "[[dkim]]") {
				ks := c.DKIMKeys("EXAMPLE.test")
				if len(ks) == 0 || ks[0].Domain != "example.test" {
					t.Fatalf("DKIMKeys: %+v", ks)
				}
			}
			if c.Journal.Enabled() && c.Journal.Policy != JournalNoWait && !strings.Contains(tt.section, "policy") {
				t.Fatalf("journal policy default: %+v", c.Journal)
			}
			if c.Audit.Enabled() && (c.Audit.MaxBytes != 64<<20 || c.Audit.MaxAge != 24*time.Hour) {
				t.Fatalf("audit defaults: %+v", c.Audit)
			}
		})
	}
}

const journalOK = "[journal]\naddress = \"journal@example.test\"\ncerts = [\"j.pem\"]\nsender = \"alice@example.test\"\n"

// TestReadmeComplianceConfig: the TOML of the README's Compliance section parses and validates
// as written (with the minimal configuration around it).
func TestReadmeComplianceConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Compliance\n")
	if !ok {
		t.Fatal("README has no Compliance section")
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var blocks []string
	for _, part := range strings.Split(sec, "```toml\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, block)
	}
	if len(blocks) < 3 {
		t.Fatalf("%d toml blocks in the Compliance section", len(blocks))
	}
	c, err := Parse([]byte(minimalForMetrics + strings.Join(blocks, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Audit.Enabled() || !c.Journal.Enabled() || len(c.DKIM) == 0 || len(c.Journal.Certs) != 2 {
		t.Fatalf("%+v %+v %+v", c.Audit, c.Journal, c.DKIM)
	}
}
