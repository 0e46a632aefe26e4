package main

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"appliance/auth"
	"appliance/config"
)

// checkFixture is a directory with a configuration check-config accepts
// without a token: the module is named without a path, so it is not looked
// for, and every file it names exists.
type checkFixture struct {
	t    *testing.T
	dir  string
	tls  testPair
	tls2 testPair
}

func newCheckFixture(t *testing.T) *checkFixture {
	t.Helper()
	f := &checkFixture{t: t, dir: t.TempDir(), tls: newTestPair(t, 1), tls2: newTestPair(t, 2)}
	for _, d := range []string{"certs", "spool"} {
		if err := os.Mkdir(filepath.Join(f.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f.write("pin", "pin-7c1e\n", 0o600)
	f.write("roots.pem", "", 0o644)
	f.write("alice.pem", "", 0o644)
	f.write("tls.pem", string(f.tls.Cert), 0o644)
	f.write("tls.key", string(f.tls.Key), 0o600)
	f.write("users", "alice:"+string(h)+":alice@example.test\n", 0o600)
	f.write("ldap.pw", "s3cret\n", 0o600)
	return f
}

func (f *checkFixture) write(name, content string, mode os.FileMode) {
	f.t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		f.t.Fatal(err)
	}
	// WriteFile leaves the mode of an existing file alone.
	if err := os.Chmod(p, mode); err != nil {
		f.t.Fatal(err)
	}
}

const checkBase = `
[hsm]
module = "libsofthsm2.so"
token = "appliance"
pin_file = "pin"
` + checkRest

// checkRest is what the configurations of these tests share after the token tables.
const checkRest = `
[relay]
next_hop = "127.0.0.1:2526"

[spool]
dir = "spool"

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "alice.pem"
`

// checkPairOneModule is checkBase with its token as a failover pair whose tokens load one module.
const checkPairOneModule = `
[hsm]
max_sessions = 4

[[token]]
name = "primary"
module = "libsofthsm2.so"
uri = "pkcs11:token=appliance"
pin_file = "pin"
roles = ["sign", "content"]
standby = "spare"

[[token]]
name = "spare"
module = "libsofthsm2.so"
uri = "pkcs11:token=spare"
pin_file = "pin"
roles = ["sign", "content"]
` + checkRest

const checkSMTP = `
[smtp]
listen = "127.0.0.1:2525"
tls_cert = "tls.pem"
tls_key = "tls.key"
users_file = "users"
`

const checkDirectory = `
[directory]
certs = "certs"
roots = "roots.pem"
`

const checkLDAP = `
[directory.ldap]
url = "ldap://127.0.0.1:1"
base_dn = "dc=example,dc=test"
bind_dn = "cn=appliance,dc=example,dc=test"
bind_password_file = "ldap.pw"
`

func (f *checkFixture) run(toml string) (string, error) {
	f.t.Helper()
	f.write("appliance.toml", toml, 0o600)
	var out, errOut bytes.Buffer
	err := runCheckConfig([]string{"-config", filepath.Join(f.dir, "appliance.toml")}, &out, &errOut)
	return out.String(), err
}

func TestCheckConfigLoads(t *testing.T) {
	t.Parallel()
	full := checkBase + checkSMTP + checkDirectory + checkLDAP
	tests := []struct {
		name    string
		toml    string
		setup   func(f *checkFixture)
		wantIs  []error  // each must match with errors.Is
		wantMsg []string // each must be in the error
		wantOut string   // must be in stdout
	}{
		{name: "ok minimal", toml: checkBase + checkDirectory, wantOut: ": ok"},
		{name: "ok tls users and ldap", toml: full, wantOut: ": ok"},
		{name: "ok bind password file readable by others is a warning", toml: full,
			setup:   func(f *checkFixture) { f.write("ldap.pw", "s3cret\n", 0o644) },
			wantOut: "warning: directory.ldap.bind_password_file"},
		{name: "ok failover pair on one module is a warning", toml: checkPairOneModule + checkDirectory,
			wantOut: `warning: token[0].standby: tokens "primary" and "spare" load the same module`},
		{name: "fail users file malformed", toml: full,
			setup:  func(f *checkFixture) { f.write("users", "alice:not-a-hash:alice@example.test\n", 0o600) },
			wantIs: []error{auth.ErrUsersFile}, wantMsg: []string{"smtp.users_file", "line 1"}},
		{name: "fail users file without senders", toml: full,
			setup: func(f *checkFixture) {
				h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
				if err != nil {
					f.t.Fatal(err)
				}
				f.write("users", "alice:"+string(h)+":\n", 0o600)
			},
			wantIs: []error{auth.ErrUsersFile}, wantMsg: []string{"smtp.users_file", "no sender addresses"}},
		{name: "fail users file readable by others", toml: full,
			setup:  func(f *checkFixture) { f.chmod("users", 0o644) },
			wantIs: []error{auth.ErrUsersFile}, wantMsg: []string{"smtp.users_file", "0644"}},
		{name: "fail users file missing is reported once", toml: full,
			setup:  func(f *checkFixture) { f.remove("users") },
			wantIs: []error{config.ErrFile}, wantMsg: []string{"smtp.users_file"}},
		{name: "fail tls key of another certificate", toml: full,
			setup:   func(f *checkFixture) { f.write("tls.key", string(f.tls2.Key), 0o600) },
			wantMsg: []string{"smtp.tls_cert", "tls.key"}},
		{name: "fail tls certificate not pem", toml: full,
			setup:   func(f *checkFixture) { f.write("tls.pem", "not a certificate\n", 0o644) },
			wantMsg: []string{"smtp.tls_cert", "tls.pem"}},
		{name: "fail ldap bind password file missing", toml: full,
			setup:  func(f *checkFixture) { f.remove("ldap.pw") },
			wantIs: []error{fs.ErrNotExist}, wantMsg: []string{"directory.ldap.bind_password_file"}},
		{name: "fail ldap bind password empty", toml: full,
			setup:  func(f *checkFixture) { f.write("ldap.pw", "\n", 0o600) },
			wantIs: []error{config.ErrEmptyBindPassword}, wantMsg: []string{"directory.ldap.bind_password_file"}},
		{name: "fail pin file readable by group", toml: full,
			setup:  func(f *checkFixture) { f.chmod("pin", 0o640) },
			wantIs: []error{config.ErrPINFileMode}, wantMsg: []string{"hsm.pin_file", "0640"}},
		{name: "fail every problem reported at once", toml: full,
			setup: func(f *checkFixture) {
				f.chmod("pin", 0o644)
				f.write("users", "garbage\n", 0o600)
				f.write("tls.key", string(f.tls2.Key), 0o600)
				f.write("ldap.pw", "", 0o600)
			},
			wantIs:  []error{config.ErrPINFileMode, auth.ErrUsersFile, config.ErrEmptyBindPassword},
			wantMsg: []string{"hsm.pin_file", "smtp.users_file", "smtp.tls_cert", "directory.ldap.bind_password_file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCheckFixture(t)
			if tt.setup != nil {
				tt.setup(f)
			}
			out, err := f.run(tt.toml)
			if len(tt.wantIs)+len(tt.wantMsg) == 0 {
				if err != nil {
					t.Fatalf("check-config: %v", err)
				}
			} else if err == nil {
				t.Fatalf("check-config succeeded; stdout:\n%s", out)
			}
			for _, want := range tt.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("error %v is not %v", err, want)
				}
			}
			for _, want := range tt.wantMsg {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			if err != nil && strings.Count(err.Error(), "smtp.users_file") > 1 {
				t.Errorf("users file reported more than once: %v", err)
			}
			if tt.wantOut != "" && !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", out, tt.wantOut)
			}
			// The error names files, never their secrets.
			if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "pin-7c1e")) {
				t.Errorf("a secret reached the error: %v", err)
			}
		})
	}
}

func (f *checkFixture) chmod(name string, mode os.FileMode) {
	f.t.Helper()
	if err := os.Chmod(filepath.Join(f.dir, name), mode); err != nil {
		f.t.Fatal(err)
	}
}

func (f *checkFixture) remove(name string) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.dir, name)); err != nil {
		f.t.Fatal(err)
	}
}
