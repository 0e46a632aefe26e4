package config

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const base = `# a complete, valid file
[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token = "appliance"              # token label
pin_file = "/etc/appliance/pin"
max_sessions = 8

[smtp]
listen = "127.0.0.1:2525"
hostname = "relay.example.test"
max_message_bytes = 26214400
max_recipients = 1000

[relay]
next_hop = "127.0.0.1:2526"

[spool]
dir = "/var/spool/appliance"

[directory]
certs = "/etc/appliance/certs"
roots = "/etc/appliance/roots.pem"

[policy]
bcc = "individual"
missing_cert = "reject"
profile = "compat"
self_copy = true

[[sender]]
address = "alice@example.test"
key = "pkcs11:token=appliance;object=alice"
cert = "/etc/appliance/senders/alice.pem"
`

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		check   func(*testing.T, *Config)
		wantErr error  // reason, via errors.Is
		wantKey string // key named by the error
		line    int    // line named by the error, when non-zero
	}{
		{name: "ok design example", check: func(t *testing.T, c *Config) {
			want := &Config{
				HSM:   HSM{Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "appliance", PINFile: "/etc/appliance/pin", MaxSessions: 8},
				SMTP:  SMTP{Listen: "127.0.0.1:2525", Hostname: "relay.example.test", MaxMessageBytes: 26214400, MaxRecipients: 1000, SMTPSecurity: defaultSMTPSecurity()},
				Relay: Relay{NextHop: "127.0.0.1:2526"},
				Queue: Queue{MemoryBytes: 48 << 20, Retry: []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour},
					MaxAge: 120 * time.Hour},
				Spool:     Spool{Dir: "/var/spool/appliance"},
				Directory: Directory{Certs: "/etc/appliance/certs", Roots: "/etc/appliance/roots.pem"},
				Policy: Policy{Bcc: "individual", MissingCert: "reject", Profile: "compat", SelfCopy: true,
					RID: "issuer_serial", CertChoice: "all", BccHeader: "strip",
					UnknownRecipientInfo: "drop", PassThroughMissing: "refuse", SignedOverEncrypted: "refuse"},
				Log:     Log{Format: "text", Level: "info"},
				Senders: []Sender{{Address: "alice@example.test", Key: "pkcs11:token=appliance;object=alice", Cert: "/etc/appliance/senders/alice.pem"}},
			}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got  %+v\nwant %+v", c, want)
			}
		}},
		{name: "ok self_copy false overrides default", edit: repl("self_copy = true", "self_copy = false"),
			check: func(t *testing.T, c *Config) {
				if c.Policy.SelfCopy {
					t.Error("self_copy stayed true")
				}
			}},
		{name: "ok queue tuning", edit: add("[queue]\nworkers = 2\nretry = [\"30s\", \"2m\"]\nmax_age = \"48h\"\n"),
			check: func(t *testing.T, c *Config) {
				if c.Queue.Workers != 2 || !reflect.DeepEqual(c.Queue.Retry, []time.Duration{30 * time.Second, 2 * time.Minute}) || c.Queue.MaxAge != 48*time.Hour {
					t.Errorf("queue = %+v", c.Queue)
				}
			}},
		{name: "ok pin_env instead of pin_file", edit: repl(`pin_file = "/etc/appliance/pin"`, `pin_env = "APPLIANCE_PIN"`),
			check: func(t *testing.T, c *Config) {
				if c.HSM.PINEnv != "APPLIANCE_PIN" || c.HSM.PINFile != "" {
					t.Errorf("hsm = %+v", c.HSM)
				}
			}},
		{name: "ok listen on any port of all interfaces", edit: repl(`listen = "127.0.0.1:2525"`, `listen = ":0"`)},
		{name: "ok listen on ipv6", edit: repl(`listen = "127.0.0.1:2525"`, `listen = "[::1]:25"`)},
		{name: "ok next_hop host name", edit: repl(`next_hop = "127.0.0.1:2526"`, `next_hop = "smarthost.example.test:25"`)},
		{name: "ok domain override", edit: add("[[policy.domain]]\ndomain = \"Modern.Example.\"\nprofile = \"modern\"\nrid = \"ski\"\n"),
			check: func(t *testing.T, c *Config) {
				p := c.Policy.ForDomain("MODERN.example.test")
				if p.Profile != "compat" {
					t.Errorf("non-matching domain got profile %q", p.Profile)
				}
				p = c.Policy.ForDomain("modern.EXAMPLE")
				if p.Profile != "modern" || p.RID != "ski" || p.Bcc != "individual" || p.MissingCert != "reject" || p.Domains != nil {
					t.Errorf("ForDomain = %+v", p)
				}
			}},
		{name: "ok sender domain case-folded", edit: repl(`address = "alice@example.test"`, `address = "Alice@EXAMPLE.test"`),
			check: func(t *testing.T, c *Config) {
				if c.Senders[0].Address != "Alice@example.test" {
					t.Errorf("address = %q", c.Senders[0].Address)
				}
				if _, ok := c.Sender("alice@example.TEST"); !ok {
					t.Error("Sender lookup failed")
				}
				if _, ok := c.Sender("bob@example.test"); ok {
					t.Error("Sender found a stranger")
				}
			}},
		{name: "ok passthrough policy", edit: repl("self_copy = true", "self_copy = true\nunknown_recipientinfo = \"reject\"\npassthrough_missing = \"deliver\"\nsigned_over_encrypted = \"resign\""),
			check: func(t *testing.T, c *Config) {
				if c.Policy.UnknownRecipientInfo != UnknownRIReject || c.Policy.PassThroughMissing != PassThroughMissingDeliver ||
					c.Policy.SignedOverEncrypted != SignedOverEncryptedResign {
					t.Errorf("policy = %+v", c.Policy)
				}
			}},
		{name: "ok log json debug", edit: add("[log]\nformat = \"json\"\nlevel = \"debug\"\n"),
			check: func(t *testing.T, c *Config) {
				if c.Log.Format != LogJSON || c.Log.SlogLevel() != slog.LevelDebug {
					t.Errorf("log = %+v", c.Log)
				}
			}},

		{name: "fail toml syntax", edit: add("[hsm\n"), wantErr: ErrSyntax, line: 35},
		{name: "fail wrong type", edit: repl("max_sessions = 8", `max_sessions = "8"`), wantErr: ErrSyntax, wantKey: "hsm.max_sessions", line: 6},
		{name: "fail unknown key", edit: repl("max_sessions = 8", "max_session = 8"), wantErr: ErrUnknownKey, wantKey: "hsm.max_session", line: 6},
		{name: "fail unknown table", edit: add("[smpt]\nlisten = \"x\"\n"), wantErr: ErrUnknownKey, wantKey: "smpt.listen", line: 35},
		{name: "fail unknown empty table", edit: add("[tls]\n"), wantErr: ErrUnknownKey, wantKey: "tls", line: 34},
		{name: "fail unknown key in domain override", edit: add("[[policy.domain]]\ndomain = \"a.example\"\nprofil = \"modern\"\n"), wantErr: ErrUnknownKey, wantKey: "policy.domain.profil", line: 36},
		{name: "fail unknown key in sender", edit: add("[[sender]]\naddress = \"bob@example.test\"\nkey = \"pkcs11:object=bob\"\ncert = \"b.pem\"\ncrt = \"x\"\n"),
			wantErr: ErrUnknownKey, wantKey: "sender.crt", line: 38},
		{name: "fail missing module", edit: repl(`module = "/usr/lib/softhsm/libsofthsm2.so"`, ""), wantErr: ErrMissing, wantKey: "hsm.module", line: 2},
		{name: "fail missing token", edit: repl(`token = "appliance"`, ""), wantErr: ErrMissing, wantKey: "hsm.token"},
		{name: "fail neither pin_file nor pin_env", edit: repl(`pin_file = "/etc/appliance/pin"`, ""), wantErr: ErrMissing, wantKey: "hsm.pin_file"},
		{name: "fail both pin_file and pin_env", edit: repl(`max_sessions = 8`, "max_sessions = 8\npin_env = \"P\""), wantErr: ErrConflict, wantKey: "hsm.pin_env", line: 7},
		{name: "fail max_sessions 1", edit: repl("max_sessions = 8", "max_sessions = 1"), wantErr: ErrInvalid, wantKey: "hsm.max_sessions", line: 6},
		{name: "fail listen without port", edit: repl(`listen = "127.0.0.1:2525"`, `listen = "127.0.0.1"`), wantErr: ErrInvalid, wantKey: "smtp.listen", line: 9},
		{name: "fail listen bad port", edit: repl(`listen = "127.0.0.1:2525"`, `listen = "127.0.0.1:99999"`), wantErr: ErrInvalid, wantKey: "smtp.listen"},
		{name: "fail hostname with space", edit: repl(`hostname = "relay.example.test"`, `hostname = "relay example"`), wantErr: ErrInvalid, wantKey: "smtp.hostname", line: 10},
		{name: "fail max_message_bytes zero", edit: repl("max_message_bytes = 26214400", "max_message_bytes = 0"), wantErr: ErrInvalid, wantKey: "smtp.max_message_bytes"},
		{name: "fail max_recipients negative", edit: repl("max_recipients = 1000", "max_recipients = -1"), wantErr: ErrInvalid, wantKey: "smtp.max_recipients"},
		{name: "fail tls_cert without tls_key", edit: repl("max_recipients = 1000", "max_recipients = 1000\ntls_cert = \"c.pem\""), wantErr: ErrConflict, wantKey: "smtp.tls_key"},
		{name: "fail require_auth without users_file", edit: repl("max_recipients = 1000", "max_recipients = 1000\nrequire_auth = true"), wantErr: ErrMissing, wantKey: "smtp.users_file"},
		{name: "fail missing next_hop", edit: repl(`next_hop = "127.0.0.1:2526"`, ""), wantErr: ErrMissing, wantKey: "relay.next_hop", line: 14},
		{name: "fail next_hop mx", edit: repl(`next_hop = "127.0.0.1:2526"`, `next_hop = "mx"`), wantErr: ErrInvalid, wantKey: "relay.next_hop", line: 15},
		{name: "fail next_hop port 0", edit: repl(`next_hop = "127.0.0.1:2526"`, `next_hop = "127.0.0.1:0"`), wantErr: ErrInvalid, wantKey: "relay.next_hop"},
		{name: "fail next_hop no host", edit: repl(`next_hop = "127.0.0.1:2526"`, `next_hop = ":25"`), wantErr: ErrInvalid, wantKey: "relay.next_hop"},
		{name: "fail missing spool dir", edit: repl(`dir = "/var/spool/appliance"`, ""), wantErr: ErrMissing, wantKey: "spool.dir"},
		{name: "fail missing certs", edit: repl(`certs = "/etc/appliance/certs"`, ""), wantErr: ErrMissing, wantKey: "directory.certs"},
		{name: "fail missing roots", edit: repl(`roots = "/etc/appliance/roots.pem"`, ""), wantErr: ErrMissing, wantKey: "directory.roots"},
		{name: "fail workers negative", edit: add("[queue]\nworkers = -1\n"), wantErr: ErrInvalid, wantKey: "queue.workers", line: 35},
		{name: "fail retry empty", edit: add("[queue]\nretry = []\n"), wantErr: ErrMissing, wantKey: "queue.retry"},
		{name: "fail retry not a duration", edit: add("[queue]\nretry = [\"5 minutes\"]\n"), wantErr: ErrSyntax, wantKey: "queue.retry", line: 35},
		{name: "fail retry integer", edit: add("[queue]\nretry = [60]\n"), wantErr: ErrInvalid, wantKey: "queue.retry", line: 35},
		{name: "fail retry too short", edit: add("[queue]\nretry = [\"10ms\"]\n"), wantErr: ErrInvalid, wantKey: "queue.retry"},
		{name: "fail max_age integer", edit: add("[queue]\nmax_age = 3600\n"), wantErr: ErrInvalid, wantKey: "queue.max_age"},
		{name: "fail bcc enum", edit: repl(`bcc = "individual"`, `bcc = "hidden"`), wantErr: ErrInvalid, wantKey: "policy.bcc", line: 25},
		{name: "fail missing_cert enum", edit: repl(`missing_cert = "reject"`, `missing_cert = "bounce"`), wantErr: ErrInvalid, wantKey: "policy.missing_cert"},
		{name: "fail profile enum", edit: repl(`profile = "compat"`, `profile = "gcm"`), wantErr: ErrInvalid, wantKey: "policy.profile"},
		{name: "fail rid enum", edit: repl("self_copy = true", "self_copy = true\nrid = \"serial\""), wantErr: ErrInvalid, wantKey: "policy.rid"},
		{name: "fail cert_choice enum", edit: repl("self_copy = true", "self_copy = true\ncert_choice = \"first\""), wantErr: ErrInvalid, wantKey: "policy.cert_choice"},
		{name: "fail bcc_header enum", edit: repl("self_copy = true", "self_copy = true\nbcc_header = \"keep\""), wantErr: ErrInvalid, wantKey: "policy.bcc_header"},
		{name: "fail unknown_recipientinfo enum", edit: repl("self_copy = true", "self_copy = true\nunknown_recipientinfo = \"keep\""), wantErr: ErrInvalid, wantKey: "policy.unknown_recipientinfo", line: 29},
		{name: "fail passthrough_missing enum", edit: repl("self_copy = true", "self_copy = true\npassthrough_missing = \"as-is\""), wantErr: ErrInvalid, wantKey: "policy.passthrough_missing", line: 29},
		{name: "fail signed_over_encrypted enum", edit: repl("self_copy = true", "self_copy = true\nsigned_over_encrypted = \"keep\""), wantErr: ErrInvalid, wantKey: "policy.signed_over_encrypted", line: 29},
		{name: "fail log format enum", edit: add("[log]\nformat = \"xml\"\n"), wantErr: ErrInvalid, wantKey: "log.format", line: 35},
		{name: "fail log level enum", edit: add("[log]\nlevel = \"trace\"\n"), wantErr: ErrInvalid, wantKey: "log.level"},
		{name: "fail domain override without domain", edit: add("[[policy.domain]]\nprofile = \"modern\"\n"), wantErr: ErrMissing, wantKey: "policy.domain[0].domain"},
		{name: "fail domain override bad domain", edit: add("[[policy.domain]]\ndomain = \"*.example\"\n"), wantErr: ErrInvalid, wantKey: "policy.domain[0].domain", line: 35},
		{name: "fail domain override bad profile", edit: add("[[policy.domain]]\ndomain = \"a.example\"\nprofile = \"fast\"\n"), wantErr: ErrInvalid, wantKey: "policy.domain[0].profile", line: 36},
		{name: "fail domain override bad rid", edit: add("[[policy.domain]]\ndomain = \"a.example\"\nrid = \"x\"\n"), wantErr: ErrInvalid, wantKey: "policy.domain[0].rid"},
		{name: "fail domain override bcc is per message", edit: add("[[policy.domain]]\ndomain = \"a.example\"\nbcc = \"group\"\n"), wantErr: ErrUnknownKey, wantKey: "policy.domain.bcc", line: 36},
		{name: "fail duplicate domain override", edit: add("[[policy.domain]]\ndomain = \"a.example\"\n[[policy.domain]]\ndomain = \"A.example\"\n"),
			wantErr: ErrDuplicate, wantKey: "policy.domain[1].domain", line: 37},
		{name: "fail no sender", edit: cut("[[sender]]"), wantErr: ErrMissing, wantKey: "sender"},
		{name: "fail sender without address", edit: repl(`address = "alice@example.test"`, ""), wantErr: ErrMissing, wantKey: "sender[0].address"},
		{name: "fail sender bad address", edit: repl(`address = "alice@example.test"`, `address = "alice"`), wantErr: ErrInvalid, wantKey: "sender[0].address", line: 31},
		{name: "fail sender address with name", edit: repl(`address = "alice@example.test"`, `address = "Alice <alice@example.test>"`), wantErr: ErrInvalid, wantKey: "sender[0].address"},
		{name: "fail sender without key", edit: repl(`key = "pkcs11:token=appliance;object=alice"`, ""), wantErr: ErrMissing, wantKey: "sender[0].key"},
		{name: "fail sender key not pkcs11", edit: repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "/etc/alice.key"`), wantErr: ErrInvalid, wantKey: "sender[0].key", line: 32},
		{name: "fail sender key names no object", edit: repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:token=appliance"`), wantErr: ErrInvalid, wantKey: "sender[0].key"},
		{name: "fail sender key other token", edit: repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:token=other;object=alice"`), wantErr: ErrInvalid, wantKey: "sender[0].key"},
		{name: "fail sender key bad escape", edit: repl(`key = "pkcs11:token=appliance;object=alice"`, `key = "pkcs11:object=al%zzice"`), wantErr: ErrInvalid, wantKey: "sender[0].key"},
		{name: "fail sender without cert", edit: repl(`cert = "/etc/appliance/senders/alice.pem"`, ""), wantErr: ErrMissing, wantKey: "sender[0].cert"},
		{name: "fail duplicate sender", edit: add("[[sender]]\naddress = \"ALICE@example.test\"\nkey = \"pkcs11:object=alice2\"\ncert = \"a2.pem\"\n"),
			wantErr: ErrDuplicate, wantKey: "sender[1].address", line: 35},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := base
			if tt.edit != nil {
				data = tt.edit(base)
				if data == base {
					t.Fatal("edit changed nothing")
				}
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
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %q is not %v", err, tt.wantErr)
			}
			e := findError(err, tt.wantErr, tt.wantKey)
			if e == nil {
				t.Fatalf("no %v error for key %q in %q", tt.wantErr, tt.wantKey, err)
			}
			if tt.line != 0 && e.Line != tt.line {
				t.Errorf("line = %d, want %d (%v)", e.Line, tt.line, e)
			}
			if tt.wantKey != "" && !strings.Contains(e.Error(), tt.wantKey) {
				t.Errorf("message %q does not name %q", e.Error(), tt.wantKey)
			}
		})
	}
}

// findError picks the *Error with the reason and key out of a joined error.
func findError(err, reason error, key string) *Error {
	var all []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	} else {
		all = []error{err}
	}
	for _, e := range all {
		var ce *Error
		if errors.As(e, &ce) && errors.Is(ce, reason) && (key == "" || ce.Key == key) {
			return ce
		}
	}
	return nil
}

func repl(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func add(more string) func(string) string {
	return func(s string) string { return s + more }
}

func cut(from string) func(string) string {
	return func(s string) string { return s[:strings.Index(s, from)] }
}

func TestParseReportsAllProblems(t *testing.T) {
	data := strings.NewReplacer(`bcc = "individual"`, `bcc = "x"`, `profile = "compat"`, `profile = "y"`).Replace(base)
	_, err := Parse([]byte(data))
	if findError(err, ErrInvalid, "policy.bcc") == nil || findError(err, ErrInvalid, "policy.profile") == nil {
		t.Fatalf("want both problems, got %v", err)
	}
}

func TestLoadResolvesRelativePaths(t *testing.T) {
	dir := t.TempDir()
	data := strings.NewReplacer(
		`"/etc/appliance/pin"`, `"pin"`,
		`"/etc/appliance/certs"`, `"certs"`,
		`"/etc/appliance/roots.pem"`, "\"pki/roots.pem\"\ncrls = \"pki/crls\"",
		`"/etc/appliance/senders/alice.pem"`, `"senders/alice.pem"`,
		`"/var/spool/appliance"`, `"/abs/spool"`,
		`"/usr/lib/softhsm/libsofthsm2.so"`, `"libsofthsm2.so"`,
	).Replace(base)
	path := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, got, want string }{
		{"ok pin_file", c.HSM.PINFile, filepath.Join(dir, "pin")},
		{"ok certs", c.Directory.Certs, filepath.Join(dir, "certs")},
		{"ok roots", c.Directory.Roots, filepath.Join(dir, "pki", "roots.pem")},
		{"ok crls", c.Directory.CRLs, filepath.Join(dir, "pki", "crls")},
		{"ok sender cert", c.Senders[0].Cert, filepath.Join(dir, "senders", "alice.pem")},
		{"ok absolute kept", c.Spool.Dir, "/abs/spool"},
		{"ok bare module name kept for dlopen", c.HSM.Module, "libsofthsm2.so"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, tc.got, tc.want)
		}
	}

	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fail missing file: got %v", err)
	}
}

func TestPIN(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Setenv("TEST_APPLIANCE_PIN", "4321")
	t.Setenv("TEST_APPLIANCE_EMPTY", "")
	tests := []struct {
		name    string
		hsm     HSM
		want    string
		wantErr error
	}{
		{name: "ok file 0600 with newline", hsm: HSM{PINFile: write("a", "1234\n", 0o600)}, want: "1234"},
		{name: "ok file 0400 with crlf", hsm: HSM{PINFile: write("b", "1234\r\n", 0o400)}, want: "1234"},
		{name: "ok env", hsm: HSM{PINEnv: "TEST_APPLIANCE_PIN"}, want: "4321"},
		{name: "fail file group readable", hsm: HSM{PINFile: write("c", "1234", 0o640)}, wantErr: ErrPINFileMode},
		{name: "fail file world readable", hsm: HSM{PINFile: write("d", "1234", 0o604)}, wantErr: ErrPINFileMode},
		{name: "fail file empty", hsm: HSM{PINFile: write("e", "\n", 0o600)}, wantErr: ErrPINEmpty},
		{name: "fail file missing", hsm: HSM{PINFile: filepath.Join(dir, "nope")}, wantErr: ErrFile},
		{name: "fail file is a directory", hsm: HSM{PINFile: dir}, wantErr: ErrFile},
		{name: "fail file too large", hsm: HSM{PINFile: write("f", strings.Repeat("x", maxPINFile+1), 0o600)}, wantErr: ErrFile},
		{name: "fail env unset", hsm: HSM{PINEnv: "TEST_APPLIANCE_UNSET_XYZ"}, wantErr: ErrPINEnvNotSet},
		{name: "fail env empty", hsm: HSM{PINEnv: "TEST_APPLIANCE_EMPTY"}, wantErr: ErrPINEmpty},
		{name: "fail neither", hsm: HSM{}, wantErr: ErrMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &Config{HSM: tt.hsm}
			got, err := c.PIN()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "1234") {
					t.Errorf("error leaks the pin: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("PIN() = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"certs", "spool"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"roots.pem", "alice.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "pin"), []byte("1234"), 0o600); err != nil {
		t.Fatal(err)
	}
	good := func() *Config {
		return &Config{
			HSM:       HSM{Module: "libsofthsm2.so", PINFile: filepath.Join(dir, "pin")},
			Spool:     Spool{Dir: filepath.Join(dir, "spool")},
			Directory: Directory{Certs: filepath.Join(dir, "certs"), Roots: filepath.Join(dir, "roots.pem")},
			Senders:   []Sender{{Cert: filepath.Join(dir, "alice.pem")}},
		}
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantKey string
	}{
		{name: "ok all present"},
		{name: "fail module missing", edit: func(c *Config) { c.HSM.Module = filepath.Join(dir, "nope.so") }, wantKey: "hsm.module"},
		{name: "fail pin file missing", edit: func(c *Config) { c.HSM.PINFile = filepath.Join(dir, "nope") }, wantKey: "hsm.pin_file"},
		{name: "ok spool missing but creatable", edit: func(c *Config) { c.Spool.Dir = filepath.Join(dir, "spool", "new", "deeper") }},
		{name: "fail spool parent is a file", edit: func(c *Config) { c.Spool.Dir = filepath.Join(dir, "roots.pem", "spool") }, wantKey: "spool.dir"},
		{name: "fail spool is a file", edit: func(c *Config) { c.Spool.Dir = filepath.Join(dir, "roots.pem") }, wantKey: "spool.dir"},
		{name: "fail certs missing", edit: func(c *Config) { c.Directory.Certs = filepath.Join(dir, "nope") }, wantKey: "directory.certs"},
		{name: "fail crls is a file", edit: func(c *Config) { c.Directory.CRLs = filepath.Join(dir, "roots.pem") }, wantKey: "directory.crls"},
		{name: "fail roots is a directory", edit: func(c *Config) { c.Directory.Roots = dir }, wantKey: "directory.roots"},
		{name: "fail sender cert missing", edit: func(c *Config) { c.Senders[0].Cert = filepath.Join(dir, "bob.pem") }, wantKey: "sender[0].cert"},
		{name: "fail tls key missing", edit: func(c *Config) {
			c.SMTP.TLSCert = filepath.Join(dir, "alice.pem")
			c.SMTP.TLSKey = filepath.Join(dir, "nope")
		}, wantKey: "smtp.tls_key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good()
			if tt.edit != nil {
				tt.edit(c)
			}
			err := c.CheckFiles()
			if tt.wantKey == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if findError(err, ErrFile, tt.wantKey) == nil {
				t.Fatalf("want a file error for %q, got %v", tt.wantKey, err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "[[policy.domain]]\ndomain = \"a.example\"\nprofile = \"modern\"\n"))
	f.Add([]byte("[queue]\nretry = [60, \"1m\"]\nmax_age = '''\n1h'''\n"))
	f.Add([]byte("a = \"\"\"\nb = 1\n\"\"\"\n[x.'y'.\"z\"]\nq = 1 # c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err == nil && c == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && c != nil {
			t.Fatal("config returned with error")
		}
		_ = keyLines(data)
	})
}
