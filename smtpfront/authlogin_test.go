package smtpfront

import (
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The challenges as they appear on the wire.
var (
	wireUsername = "334 " + b64("Username:")
	wirePassword = "334 " + b64("Password:")
)

func TestAuthLoginClient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		tls      bool // STARTTLS, and AUTH only over TLS
		user     string
		pass     string
		from     string
		wantAuth string
		wantMail string
	}{
		{"ok login own address", false, "alice", "secret", "alice@example.test", "", ""},
		{"ok login over starttls", true, "alice", "secret", "alice@example.test", "", ""},
		{"fail wrong password", false, "alice", "guess", "alice@example.test", "535 5.7.8", "530 5.7.0"},
		{"fail unknown user", false, "mallory", "secret", "alice@example.test", "535 5.7.8", "530 5.7.0"},
		{"fail someone else's address", false, "alice", "secret", "bob@example.test", "", "550 5.7.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			opts := Options{Auth: passwords{"alice": "secret"}, AllowInsecureAuth: !tt.tls, RequireAuth: true, AuthFailureDelay: -1}
			var cliCfg *tls.Config
			if tt.tls {
				opts.TLSConfig, cliCfg = testTLS(t)
			}
			ts := startServer(t, opts, spool, userPolicy{newTestPolicy()})
			var c *smtp.Client
			var err error
			if cliCfg != nil {
				c, err = smtp.DialStartTLS(ts.addr, cliCfg)
			} else {
				c, err = smtp.Dial(ts.addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Hello("client.example.test"); err != nil {
				t.Fatal(err)
			}
			if !c.SupportsAuth(sasl.Login) || !c.SupportsAuth(sasl.Plain) {
				t.Fatal("AUTH LOGIN and PLAIN not both offered")
			}
			err = c.Auth(sasl.NewLoginClient(tt.user, tt.pass))
			checkSMTPErr(t, "AUTH", err, tt.wantAuth)
			err = c.Mail(tt.from, nil)
			checkSMTPErr(t, "MAIL", err, tt.wantMail)
			if tt.wantMail != "" {
				if n := len(spool.messages(t)); n != 0 {
					t.Errorf("%d messages spooled after a refusal", n)
				}
				return
			}
			if err := c.Rcpt("bob@example.test", nil); err != nil {
				t.Fatal(err)
			}
			w, err := c.Data()
			if err != nil {
				t.Fatal(err)
			}
			io.WriteString(w, "From: alice@example.test\r\n\r\nhi\r\n")
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if env := spool.envelope("m0001"); env.AuthUser != tt.user {
				t.Errorf("envelope AuthUser = %q, want %q", env.AuthUser, tt.user)
			}
			if log := ts.logText(); strings.Contains(log, tt.pass) {
				t.Errorf("the password reached the log:\n%s", log)
			}
		})
	}
}

// TestAuthLoginRaw drives the exchange by hand: go-sasl's client always
// sends an initial response, real clients (Outlook, older MTAs) often do not.
func TestAuthLoginRaw(t *testing.T) {
	t.Parallel()
	type step struct{ send, want string }
	tests := []struct {
		name     string
		insecure bool
		steps    []step
		wantUser string
	}{
		{"ok with initial response", true, []step{
			{"AUTH LOGIN " + b64("alice"), wirePassword},
			{b64("secret"), "235 2.0.0"},
		}, "alice"},
		{"ok without initial response", true, []step{
			{"AUTH LOGIN", wireUsername},
			{b64("alice"), wirePassword},
			{b64("secret"), "235 2.0.0"},
		}, "alice"},
		{"ok lower-case mechanism", true, []step{
			{"AUTH login", wireUsername},
			{b64("alice"), wirePassword},
			{b64("secret"), "235 2.0.0"},
		}, "alice"},
		{"ok empty initial response asks for the user", true, []step{
			{"AUTH LOGIN =", wireUsername},
			{b64("alice"), wirePassword},
			{b64("secret"), "235 2.0.0"},
		}, "alice"},
		{"fail wrong password with initial response", true, []step{
			{"AUTH LOGIN " + b64("alice"), wirePassword},
			{b64("guess"), "535 5.7.8"},
		}, ""},
		{"fail wrong password without initial response", true, []step{
			{"AUTH LOGIN", wireUsername},
			{b64("alice"), wirePassword},
			{b64("guess"), "535 5.7.8"},
		}, ""},
		{"fail user and password swapped", true, []step{
			{"AUTH LOGIN", wireUsername},
			{b64("secret"), wirePassword},
			{b64("alice"), "535 5.7.8"},
		}, ""},
		{"fail cancelled", true, []step{
			{"AUTH LOGIN", wireUsername},
			{"*", "501 5.0.0"},
		}, ""},
		{"fail bad base64", true, []step{
			{"AUTH LOGIN", wireUsername},
			{"!!!", "454 4.7.0"},
		}, ""},
		{"fail without tls", false, []step{
			{"AUTH LOGIN " + b64("alice"), "523 5.7.10"},
		}, ""},
		{"fail without tls and initial response", false, []step{
			{"AUTH LOGIN", "523 5.7.10"},
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			spool := newFileSpool(t)
			opts := Options{Auth: passwords{"alice": "secret"}, AllowInsecureAuth: tt.insecure, RequireAuth: true, AuthFailureDelay: -1}
			ts := startServer(t, opts, spool, userPolicy{newTestPolicy()})
			rc := dialRaw(t, ts.addr)
			rc.cmd("EHLO client.example.test")
			for i, s := range tt.steps {
				if got := rc.cmd(s.send); !strings.HasPrefix(got, s.want) {
					t.Fatalf("step %d %q: reply %q, want %q", i, s.send, got, s.want)
				}
			}
			// The session's identity is what MAIL is judged by.
			want := "530 5.7.0"
			if tt.wantUser != "" {
				want = "250 2.0.0"
			}
			if got := rc.cmd("MAIL FROM:<alice@example.test>"); code(got) != want {
				t.Errorf("MAIL after AUTH = %q, want %s", got, want)
			}
			log := ts.logText()
			if strings.Contains(log, "secret") || strings.Contains(log, "guess") {
				t.Errorf("a password reached the log:\n%s", log)
			}
			// A real user's failures are logged with the name.
			if strings.Contains(tt.name, "wrong password") && !(strings.Contains(log, `msg="auth failed"`) && strings.Contains(log, "user=alice")) {
				t.Errorf("failure not logged with the user:\n%s", log)
			}
		})
	}
}

// TestAuthLoginLimits: LOGIN failures count with PLAIN's toward the
// per-connection limit and the per-address lockout.
func TestAuthLoginLimits(t *testing.T) {
	t.Parallel()
	const delay = 50 * time.Millisecond
	ts := startServer(t, Options{
		Auth:                 passwords{"alice": "secret"},
		AllowInsecureAuth:    true,
		MaxAuthFailures:      2,
		AuthFailureDelay:     delay,
		MaxAuthFailuresPerIP: 3,
		AuthLockout:          time.Minute,
	}, newFileSpool(t), newTestPolicy())

	rc := dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	rc.cmd("AUTH LOGIN " + b64("alice"))
	start := time.Now()
	if got := rc.cmd(b64("wrong")); code(got) != "535 5.7.8" {
		t.Fatalf("first wrong password = %q, want 535 5.7.8", got)
	}
	if d := time.Since(start); d < delay {
		t.Errorf("failure answered after %v, want at least %v", d, delay)
	}
	if got := rc.cmd("AUTH PLAIN " + plainIR("alice", "wrong2")); code(got) != "421 4.7.0" {
		t.Fatalf("second failure (PLAIN after LOGIN) = %q, want 421 4.7.0", got)
	}

	rc = dialRaw(t, ts.addr)
	rc.cmd("EHLO client")
	rc.cmd("AUTH LOGIN")
	rc.cmd(b64("nobody"))
	if got := rc.cmd(b64("x")); code(got) != "535 5.7.8" {
		t.Fatalf("unknown user = %q, want 535 5.7.8", got)
	}
	// Three failures from this address: LOGIN is locked out before it
	// asks for anything, so no password is checked.
	if got := rc.cmd("AUTH LOGIN"); code(got) != "454 4.7.0" {
		t.Fatalf("AUTH LOGIN while locked out = %q, want 454 4.7.0", got)
	}
	if got := rc.cmd("AUTH LOGIN " + b64("alice")); code(got) != "454 4.7.0" {
		t.Fatalf("AUTH LOGIN with initial response while locked out = %q, want 454 4.7.0", got)
	}
}

func TestLoginServer(t *testing.T) {
	t.Parallel()
	errWrong := errors.New("wrong")
	tests := []struct {
		name      string
		responses [][]byte // nil first element: no initial response
		wantUser  string
		wantPass  string
		wantErr   error
	}{
		{"ok initial response", [][]byte{[]byte("alice"), []byte("secret")}, "alice", "secret", nil},
		{"ok no initial response", [][]byte{nil, []byte("alice"), []byte("secret")}, "alice", "secret", nil},
		{"ok empty initial response", [][]byte{{}, []byte("alice"), []byte("secret")}, "alice", "secret", nil},
		{"fail empty password reaches the check", [][]byte{[]byte("alice"), {}}, "alice", "", errWrong},
		{"fail check refuses", [][]byte{[]byte("alice"), []byte("guess")}, "alice", "guess", errWrong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			calls := 0
			var gotUser, gotPass string
			l := newLoginServer(func(u, p string) error {
				calls++
				gotUser, gotPass = u, p
				if p != "secret" {
					return errWrong
				}
				return nil
			})
			var done bool
			var err error
			for i, r := range tt.responses {
				var ch []byte
				ch, done, err = l.Next(r)
				last := i == len(tt.responses)-1
				if done != last {
					t.Fatalf("response %d: done = %v", i, done)
				}
				if !last {
					if err != nil {
						t.Fatalf("response %d: %v", i, err)
					}
					want := "Password:"
					if i == 0 && len(r) == 0 {
						want = "Username:"
					}
					if string(ch) != want {
						t.Fatalf("response %d: challenge %q, want %q", i, ch, want)
					}
				}
			}
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if calls != 1 || gotUser != tt.wantUser || gotPass != tt.wantPass {
				t.Errorf("check called %d times with (%q, %q), want once with (%q, %q)", calls, gotUser, gotPass, tt.wantUser, tt.wantPass)
			}
			if _, _, err := l.Next([]byte("more")); err == nil {
				t.Error("Next after done succeeded")
			}
			if calls != 1 {
				t.Errorf("check called %d times", calls)
			}
		})
	}
}
