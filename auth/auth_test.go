package auth

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func bcryptHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// cheapArgon is a valid argon2id hash with small parameters, for speed.
func cheapArgon(t testing.TB, pw string) string {
	t.Helper()
	p := &argonParams{mem: 64, time: 1, threads: 1, salt: []byte("saltsaltsalt")}
	return formatArgon(p, pw)
}

func usersFile(t testing.TB) string {
	return "# users\n\n" +
		"alice:" + bcryptHash(t, "alice-pw") + ":alice@example.test, Alice.Smith@Example.TEST\n" +
		"app:" + cheapArgon(t, "app-pw") + ":@apps.example.test\n" +
		"admin:" + bcryptHash(t, "admin-pw") + ":*\n"
}

func TestParseUsers(t *testing.T) {
	t.Parallel()
	good := bcryptHash(t, "x")
	tests := []struct {
		name    string
		in      string
		wantN   int
		wantErr string
	}{
		{"ok three users", usersFile(t), 3, ""},
		{"ok empty", "# nobody\n", 0, ""},
		{"ok crlf", "bob:" + good + ":bob@example.test\r\n", 1, ""},
		{"fail no fields", "alice\n", 0, "line 1"},
		{"fail two fields", "alice:" + good + "\n", 0, "line 1"},
		{"fail empty name", ":" + good + ":a@b.c\n", 0, "line 1"},
		{"fail no senders", "alice:" + good + ":\n", 0, "no sender"},
		{"fail plaintext password", "alice:secret:a@b.c\n", 0, "neither bcrypt"},
		{"fail md5 crypt", "alice:$1$abc$def:a@b.c\n", 0, "neither bcrypt"},
		{"fail bad bcrypt", "alice:$2b$10$short:a@b.c\n", 0, "bcrypt"},
		{"fail bcrypt cost too high", "alice:$2b$31$" + strings.Repeat("a", 53) + ":a@b.c\n", 0, "cost"},
		{"fail argon2i", "alice:$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43) + ":a@b.c\n", 0, "neither"},
		{"fail argon2id huge memory", "alice:$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43) + ":a@b.c\n", 0, "out of range"},
		{"fail argon2id bad version", "alice:$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHQ$" + strings.Repeat("A", 43) + ":a@b.c\n", 0, "version"},
		{"fail argon2id short key", "alice:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$QUFB:a@b.c\n", 0, "hash value"},
		{"fail bad pattern", "alice:" + good + ":*@example.test\n", 0, "not an address"},
		{"fail duplicate", "a:" + good + ":a@b.c\na:" + good + ":a@b.c\n", 0, "line 2"},
		{"fail name with space", "al ice:" + good + ":a@b.c\n", 0, "invalid character"},
		{"fail line too long", "a:" + good + ":" + strings.Repeat("x", 5000) + "@b.c\n", 0, "invalid users file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u, err := ParseUsers(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrUsersFile) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrUsersFile containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Len() != tt.wantN {
				t.Fatalf("%d users, want %d", u.Len(), tt.wantN)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	u, err := ParseUsers(strings.NewReader(usersFile(t)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, pw string
		ok             bool
	}{
		{"ok bcrypt", "alice", "alice-pw", true},
		{"ok argon2id", "app", "app-pw", true},
		{"fail wrong bcrypt password", "alice", "alice-pw ", false},
		{"fail wrong argon2id password", "app", "alice-pw", false},
		{"fail another user's password", "admin", "alice-pw", false},
		{"fail unknown user", "mallory", "alice-pw", false},
		{"fail empty", "", "", false},
		{"fail user name case", "Alice", "alice-pw", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := u.Authenticate(context.Background(), tt.user, tt.pw)
			if tt.ok != (err == nil) {
				t.Fatalf("Authenticate = %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				if !errors.Is(err, ErrBadCredentials) {
					t.Fatalf("%v is not ErrBadCredentials", err)
				}
				if strings.Contains(err.Error(), tt.pw) && tt.pw != "" {
					t.Fatalf("error %q contains the password", err)
				}
			}
		})
	}
}

func TestHashPassword(t *testing.T) {
	t.Parallel()
	h, err := HashPassword("correct horse", rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("hash %q", h)
	}
	u, err := ParseUsers(strings.NewReader("op:" + h + ":op@example.test\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Authenticate(context.Background(), "op", "correct horse"); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if err := u.Authenticate(context.Background(), "op", "correct horse!"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if _, err := HashPassword("x", bytes.NewReader(nil)); err == nil {
		t.Fatal("no error without randomness")
	}
}

func TestLoadUsersMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode os.FileMode
		ok   bool
	}{
		{"ok 0600", 0o600, true},
		{"ok 0640", 0o640, true},
		{"fail world readable", 0o644, false},
		{"fail group writable", 0o660, false},
	}
	content := usersFile(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := filepath.Join(t.TempDir(), "users")
			if err := os.WriteFile(p, []byte(content), tt.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tt.mode); err != nil {
				t.Fatal(err)
			}
			_, err := LoadUsers(p)
			if tt.ok != (err == nil) {
				t.Fatalf("LoadUsers = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), "$2a$") {
				t.Fatalf("error reveals a hash: %v", err)
			}
		})
	}
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	u, err := ParseUsers(strings.NewReader(usersFile(t)))
	if err != nil {
		t.Fatal(err)
	}
	az := &Authorizer{Users: u, Networks: []Network{
		{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Senders: []string{"billing@example.test"}},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Senders: []string{"@ops.example.test"}},
		{Prefix: netip.MustParsePrefix("2001:db8::/32"), Senders: []string{"*"}},
	}}
	outside := netip.MustParseAddr("198.51.100.7")
	tests := []struct {
		name   string
		addr   string
		user   string
		sender string
		want   error
	}{
		{"ok user own address", "198.51.100.7", "alice", "alice@example.test", nil},
		{"ok user own address any case", "198.51.100.7", "alice", "ALICE@EXAMPLE.TEST", nil},
		{"ok user second address", "198.51.100.7", "alice", "alice.smith@example.test", nil},
		{"fail user someone else's address", "198.51.100.7", "alice", "bob@example.test", ErrSenderNotAllowed},
		{"fail user null sender", "198.51.100.7", "alice", "", ErrSenderNotAllowed},
		{"ok domain pattern", "198.51.100.7", "app", "build@apps.example.test", nil},
		{"fail domain pattern is not a suffix match", "198.51.100.7", "app", "x@evilapps.example.test", ErrSenderNotAllowed},
		{"fail domain pattern subdomain", "198.51.100.7", "app", "x@sub.apps.example.test", ErrSenderNotAllowed},
		{"ok star", "198.51.100.7", "admin", "anyone@example.org", nil},
		{"fail unknown user", "198.51.100.7", "mallory", "alice@example.test", ErrNotAuthenticated},
		{"fail anonymous outside", "198.51.100.7", "", "alice@example.test", ErrNotAuthenticated},
		{"ok network mapped sender", "10.1.2.3", "", "billing@example.test", nil},
		{"fail network unmapped sender", "10.1.2.3", "", "alice@example.test", ErrSenderNotAllowed},
		{"ok first match decides", "10.2.0.1", "", "x@ops.example.test", nil},
		{"fail first match decides", "10.1.0.1", "", "x@ops.example.test", ErrSenderNotAllowed},
		{"ok mapped ipv4 in ipv6", "::ffff:10.1.0.9", "", "billing@example.test", nil},
		{"ok ipv6 network", "2001:db8::1", "", "who@example.test", nil},
		{"fail user from trusted network judged as user", "10.1.2.3", "alice", "billing@example.test", ErrSenderNotAllowed},
		{"fail no address", "", "", "billing@example.test", ErrNotAuthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var a netip.Addr
			if tt.addr != "" {
				a = netip.MustParseAddr(tt.addr)
			}
			err := az.Authorize(a, tt.user, tt.sender)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Authorize = %v, want %v", err, tt.want)
			}
		})
	}
	var zero Authorizer
	if err := zero.Authorize(outside, "", "alice@example.test"); !errors.Is(err, ErrNotAuthenticated) {
		t.Fatalf("zero Authorizer = %v, want ErrNotAuthenticated", err)
	}
	if !az.Trusted(netip.MustParseAddr("10.9.9.9")) || az.Trusted(outside) {
		t.Fatal("Trusted is wrong")
	}
}

func FuzzParseUsers(f *testing.F) {
	f.Add([]byte(usersFile(f)))
	f.Add([]byte("a:$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$QUFBQUFBQUFBQUFBQUFBQUFBQUE:a@b.c,@d.e,*\n"))
	f.Add([]byte("a:$2b$04$" + strings.Repeat("a", 53) + ":a@b.c\n#x\n\n"))
	f.Add([]byte("::::\n:\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		u, err := ParseUsers(bytes.NewReader(in))
		if err != nil {
			if !errors.Is(err, ErrUsersFile) {
				t.Fatalf("error %v is not ErrUsersFile", err)
			}
			return
		}
		for name, user := range u.byName {
			if name == "" || len(user.Senders) == 0 {
				t.Fatalf("accepted user %q with senders %q", name, user.Senders)
			}
			for _, p := range user.Senders {
				if CheckPattern(p) != nil {
					t.Fatalf("accepted bad pattern %q", p)
				}
			}
		}
	})
}
