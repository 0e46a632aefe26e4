package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestLDAPFiles(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := (LDAP{BindPasswordFile: pw}).BindPassword(); got != "s3cret" || err != nil {
		t.Errorf("BindPassword = %q, %v; want the line without its newline", got, err)
	}
	if got, err := (LDAP{}).BindPassword(); got != "" || err != nil {
		t.Errorf("BindPassword without a file = %q, %v", got, err)
	}
	if _, err := (LDAP{BindPasswordFile: filepath.Join(dir, "none")}).BindPassword(); err == nil || !strings.Contains(err.Error(), "bind_password_file") {
		t.Errorf("missing password file: %v", err)
	}
	if c, err := (LDAP{}).TLSConfig(); c != nil || err != nil {
		t.Errorf("TLSConfig without ca_file = %v, %v; want the system roots (nil)", c, err)
	}
	if _, err := (LDAP{CAFile: pw}).TLSConfig(); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("ca_file without a certificate: %v", err)
	}
}

func TestKeysByTokenAndPinnedProfiles(t *testing.T) {
	c := Defaults()
	c.HSM.Token = "appliance"
	c.Senders = []Sender{{Address: "a@example.test", Key: "pkcs11:object=a"}, {Address: "b@example.test", Key: "pkcs11:object=b"}}
	c.Lists = []List{{Address: "l@example.test", Key: "pkcs11:object=l"}}
	want := map[string][]string{"appliance": {"pkcs11:object=a", "pkcs11:object=b", "pkcs11:object=l"}}
	if got := c.KeysByToken(); !reflect.DeepEqual(got, want) {
		t.Errorf("KeysByToken = %v, want %v", got, want)
	}
	p := Policy{Domains: []DomainPolicy{{Domain: "a.test", Profile: "legacy"}, {Domain: "a.test", Profile: "modern"}, {Domain: "b.test"}}}
	if got := p.PinnedProfiles(); !reflect.DeepEqual(got, map[string]string{"a.test": "legacy"}) {
		t.Errorf("PinnedProfiles = %v", got)
	}
}

func TestLDAPCheckFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := LDAP{URL: "ldaps://ldap.example.test", BindDN: "cn=x"}
	with := func(pwFile string) LDAP { l := base; l.BindPasswordFile = pwFile; return l }
	for _, tt := range []struct {
		name        string
		l           LDAP
		wantWarning string
		wantErr     error
	}{
		{"ok not configured", LDAP{}, "", nil},
		{"ok private password", with(write("pw", "s3cret\n", 0o600)), "", nil},
		{"ok anonymous", LDAP{URL: "ldap://x"}, "", nil},
		{"ok readable password warns", with(write("pw2", "s3cret\n", 0o644)), "has mode 0644", nil},
		{"fail empty password", with(write("pw3", "\n", 0o600)), "", ErrEmptyBindPassword},
		{"fail missing password", with(filepath.Join(dir, "none")), "", os.ErrNotExist},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w, err := tt.l.CheckFiles()
			if !errors.Is(err, tt.wantErr) || (tt.wantErr != nil && !strings.HasPrefix(err.Error(), "config: ")) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if (tt.wantWarning == "") != (w == "") || !strings.Contains(w, tt.wantWarning) {
				t.Errorf("warning %q, want %q", w, tt.wantWarning)
			}
		})
	}
}
