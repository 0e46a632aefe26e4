package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const ldapTable = `
[directory.ldap]
url = "ldap://ldap.example.test"
base_dn = "ou=people,dc=example,dc=test"
`

func dirKeys(lines string) func(string) string {
	return repl("roots = \"/etc/appliance/roots.pem\"\n", "roots = \"/etc/appliance/roots.pem\"\n"+lines+"\n")
}

func both(fs ...func(string) string) func(string) string {
	return func(s string) string {
		for _, f := range fs {
			s = f(s)
		}
		return s
	}
}

func TestDirectoryExt(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		check   func(*testing.T, *Config)
		wantErr error
		wantKey string
	}{
		{name: "ok no ldap means the folder only", edit: dirKeys(""), check: func(t *testing.T, c *Config) {
			if got := c.Directory.SourceOrder(); !reflect.DeepEqual(got, []string{"folder"}) {
				t.Errorf("sources = %q", got)
			}
			if c.Directory.LDAP.Enabled() {
				t.Error("ldap enabled")
			}
		}},
		{name: "ok ldap defaults to folder then ldap with starttls", edit: add(ldapTable), check: func(t *testing.T, c *Config) {
			if got := c.Directory.SourceOrder(); !reflect.DeepEqual(got, []string{"folder", "ldap"}) {
				t.Errorf("sources = %q", got)
			}
			if !c.Directory.LDAP.StartTLS() {
				t.Error("ldap:// without tls key must use StartTLS")
			}
			if s := c.Directory.LDAP.LDAPSummary(); !strings.Contains(s, "starttls") || !strings.Contains(s, "anonymous") {
				t.Errorf("summary %q", s)
			}
		}},
		{name: "ok full ldap table", edit: both(dirKeys(`sources = ["ldap", "folder"]
crl_url_prefixes = ["http://crl.example.test/"]
crl_fetch_timeout = "3s"`), add(ldapTable+`tls = "none"
bind_dn = "cn=relay,dc=example,dc=test"
bind_password_file = "/etc/appliance/ldap.pw"
filter = "(&(objectClass=inetOrgPerson)(mail=%s))"
attributes = ["userCertificate;binary"]
timeout = "2s"
pool_size = 8
cache_ttl = "5m"
negative_ttl = "30s"
`)), check: func(t *testing.T, c *Config) {
			d := c.Directory
			want := LDAP{URL: "ldap://ldap.example.test", TLS: "none", BindDN: "cn=relay,dc=example,dc=test",
				BindPasswordFile: "/etc/appliance/ldap.pw", BaseDN: "ou=people,dc=example,dc=test",
				Filter: "(&(objectClass=inetOrgPerson)(mail=%s))", Attributes: []string{"userCertificate;binary"},
				Timeout: 2 * time.Second, PoolSize: 8, CacheTTL: 5 * time.Minute, NegativeTTL: 30 * time.Second}
			if !reflect.DeepEqual(d.LDAP, want) {
				t.Errorf("got  %+v\nwant %+v", d.LDAP, want)
			}
			if !reflect.DeepEqual(d.SourceOrder(), []string{"ldap", "folder"}) || d.CRLFetchTimeout != 3*time.Second ||
				!reflect.DeepEqual(d.CRLURLPrefixes, []string{"http://crl.example.test/"}) {
				t.Errorf("directory %+v", d)
			}
			if d.LDAP.StartTLS() {
				t.Error("tls = none must not StartTLS")
			}
		}},
		{name: "ok ldaps", edit: add(strings.Replace(ldapTable, "ldap://", "ldaps://", 1)), check: func(t *testing.T, c *Config) {
			if c.Directory.LDAP.StartTLS() {
				t.Error("ldaps:// must not StartTLS")
			}
		}},
		{name: "ok ldap only", edit: both(dirKeys(`sources = ["ldap"]`), add(ldapTable))},
		{name: "fail unknown source", edit: dirKeys(`sources = ["nis"]`), wantErr: ErrInvalid, wantKey: "directory.sources"},
		{name: "fail empty sources", edit: dirKeys(`sources = []`), wantErr: ErrInvalid, wantKey: "directory.sources"},
		{name: "fail source twice", edit: dirKeys(`sources = ["folder", "folder"]`), wantErr: ErrDuplicate, wantKey: "directory.sources"},
		{name: "fail ldap source without url", edit: dirKeys(`sources = ["ldap"]`), wantErr: ErrMissing, wantKey: "directory.ldap.url"},
		{name: "fail ldap configured but not a source", edit: both(dirKeys(`sources = ["folder"]`), add(ldapTable)),
			wantErr: ErrConflict, wantKey: "directory.sources"},
		{name: "fail ldap settings without url", edit: add("\n[directory.ldap]\nbase_dn = \"dc=x\"\n"), wantErr: ErrMissing, wantKey: "directory.ldap.url"},
		{name: "fail http url", edit: add(strings.Replace(ldapTable, "ldap://", "http://", 1)), wantErr: ErrInvalid, wantKey: "directory.ldap.url"},
		{name: "fail no host", edit: add(strings.Replace(ldapTable, "ldap://ldap.example.test", "ldap://", 1)), wantErr: ErrInvalid, wantKey: "directory.ldap.url"},
		{name: "fail ldaps with tls", edit: add(strings.Replace(ldapTable, "ldap://", "ldaps://", 1) + `tls = "starttls"` + "\n"),
			wantErr: ErrConflict, wantKey: "directory.ldap.tls"},
		{name: "fail unknown tls mode", edit: add(ldapTable + `tls = "maybe"` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.tls"},
		{name: "fail no base dn", edit: add(strings.Replace(ldapTable, `base_dn = "ou=people,dc=example,dc=test"`, "", 1)),
			wantErr: ErrMissing, wantKey: "directory.ldap.base_dn"},
		{name: "fail bind dn without password", edit: add(ldapTable + `bind_dn = "cn=relay"` + "\n"), wantErr: ErrConflict, wantKey: "directory.ldap.bind_password_file"},
		{name: "fail filter without placeholder", edit: add(ldapTable + `filter = "(mail=*)"` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.filter"},
		{name: "fail filter with two placeholders", edit: add(ldapTable + `filter = "(|(mail=%s)(cn=%s))"` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.filter"},
		{name: "fail filter with a verb", edit: add(ldapTable + `filter = "(mail=%s%d)"` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.filter"},
		{name: "fail filter without parentheses", edit: add(ldapTable + `filter = "mail=%s"` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.filter"},
		{name: "fail empty attributes", edit: add(ldapTable + `attributes = []` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.attributes"},
		{name: "fail bad attribute", edit: add(ldapTable + `attributes = ["mail=x"]` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.attributes"},
		{name: "fail integer timeout", edit: add(ldapTable + `timeout = 5` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.timeout"},
		{name: "fail pool size", edit: add(ldapTable + `pool_size = 1000` + "\n"), wantErr: ErrInvalid, wantKey: "directory.ldap.pool_size"},
		{name: "fail unknown ldap key", edit: add(ldapTable + `password = "x"` + "\n"), wantErr: ErrUnknownKey, wantKey: "directory.ldap.password"},
		{name: "fail crl prefix not http", edit: dirKeys(`crl_url_prefixes = ["ldap://x/"]`), wantErr: ErrInvalid, wantKey: "directory.crl_url_prefixes"},
		{name: "fail crl timeout too short", edit: dirKeys(`crl_fetch_timeout = "1ms"`), wantErr: ErrInvalid, wantKey: "directory.crl_fetch_timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.edit(base)
			if data == base && tt.name != "ok no ldap means the folder only" {
				t.Fatal("edit changed nothing")
			}
			c, err := Parse([]byte(data))
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want %v", tt.wantErr)
			}
			if e := findError(err, tt.wantErr, tt.wantKey); e == nil {
				t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
			} else if !errors.Is(e, tt.wantErr) || e.Line == 0 && tt.wantKey != "directory.ldap.base_dn" && tt.wantKey != "directory.ldap.url" {
				t.Errorf("error %q has no line", e)
			}
		})
	}
}

func TestDirectoryExtResolvesPaths(t *testing.T) {
	dir := t.TempDir()
	data := base + ldapTable + "ca_file = \"ldap-ca.pem\"\nbind_dn = \"cn=relay\"\nbind_password_file = \"/abs/ldap.pw\"\n"
	path := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "ldap-ca.pem"); c.Directory.LDAP.CAFile != want {
		t.Errorf("ca_file = %q, want %q", c.Directory.LDAP.CAFile, want)
	}
	if c.Directory.LDAP.BindPasswordFile != "/abs/ldap.pw" {
		t.Errorf("bind_password_file = %q", c.Directory.LDAP.BindPasswordFile)
	}
}
