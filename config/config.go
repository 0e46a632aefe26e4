// Package config reads the appliance's single TOML file into a plain,
// validated struct.
//
// The file is decoded over a struct pre-filled with defaults, so a key that
// is absent keeps its default and a key that is present always wins. Then
// every field is checked on its own (enums, addresses, ranges) and across
// fields (pin_file xor pin_env, TLS cert with key, duplicate senders). All
// problems are reported at once, each as an [*Error] naming the key and,
// where it can be found, the line: an operator fixing a file wants the whole
// list, not one round trip per typo. Unknown keys are errors because a
// misspelt key silently falling back to a default is how a relay ends up
// sending plaintext.
//
// The PIN is never part of [Config]: [Config.PIN] reads it from the file or
// environment variable when the HSM is opened, so the struct can be logged
// or printed by check-config without leaking it.
//
// Relative paths in a file read by [Load] resolve against the directory of
// that file, so a config and its certificates can move together.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole appliance configuration. Field names follow the TOML keys. The doc
// comments of these types are the configuration reference: `go generate
// ./config/` makes `appliance help config` and deploy/appliance.toml from them (see
// internal/configref for the two kinds of line, Value: and Example:, they may hold).
type Config struct {
	HSM       HSM       `toml:"hsm"`
	SMTP      SMTP      `toml:"smtp"`
	Relay     Relay     `toml:"relay"`
	Queue     Queue     `toml:"queue"`
	Spool     Spool     `toml:"spool"`
	Directory Directory `toml:"directory"`
	Policy    Policy    `toml:"policy"`
	Log       Log       `toml:"log"`
	Metrics   Metrics   `toml:"metrics"`
	Senders   []Sender  `toml:"sender"`
	Lists     []List    `toml:"list"`
	DKIM      []DKIM    `toml:"dkim"`
	Audit     Audit     `toml:"audit"`
	Journal   Journal   `toml:"journal"`
	// Tokens are [[token]] entries; none means [hsm] is the one token.
	Tokens []Token `toml:"token"`
}

// The PKCS#11 module and token that hold every private key. The PIN is never in this file.
type HSM struct {
	// The PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so. A bare file name is searched
	// on the library path.
	// Value: path, required
	// Example: "/usr/lib/softhsm/libsofthsm2.so"
	Module string `toml:"module"`
	// The token label.
	// Value: string, required
	// Example: "appliance"
	Token string `toml:"token"`
	// A file holding the user PIN (mode 0600, nothing readable by group or others). Exactly one
	// of pin_file and pin_env.
	// Value: path, required unless pin_env
	// Example: "/etc/appliance/pin"
	PINFile string `toml:"pin_file"`
	// The environment variable holding the user PIN.
	// Example: "APPLIANCE_PIN"
	PINEnv string `toml:"pin_env"`
	// PKCS#11 sessions to open; one is kept by crypto11 for itself, so 2 means no parallelism.
	// Value: integer 2..1024, default 8
	MaxSessions int `toml:"max_sessions"`
	// RequireUp and ReconnectMax: see hsm_ext.go.
	HSMHealth
}

// The submission listener: who may hand mail to the appliance, and how much a client may cost.
type SMTP struct {
	// The SMTP listener. With Postfix as content filter: 127.0.0.1:10025.
	// Value: host:port, default "127.0.0.1:2525"
	Listen string `toml:"listen"`
	// The name in the greeting and in the Received field each package gets.
	// Value: host name, default the machine's
	// Example: "relay.example.test"
	Hostname string `toml:"hostname"`
	// The largest message accepted (552 5.3.4 above it); also advertised with SIZE.
	MaxMessageBytes int64 `toml:"max_message_bytes"`
	// Recipients per transaction.
	// Value: integer 1..100000, default 1000
	MaxRecipients int `toml:"max_recipients"`
	// PEM certificate chain for STARTTLS (and listen_tls); goes with tls_key. SIGHUP rereads
	// the pair.
	// Value: path
	// Example: "/etc/appliance/tls/cert.pem"
	TLSCert string `toml:"tls_cert"`
	// PEM private key for tls_cert.
	// Value: path
	// Example: "/etc/appliance/tls/key.pem"
	TLSKey string `toml:"tls_key"`
	// Refuse MAIL before AUTH (530 5.7.0); needs users_file.
	RequireAuth bool `toml:"require_auth"`
	// Users for AUTH PLAIN and LOGIN and the sender addresses each may use. SIGHUP rereads it.
	// Value: path
	// Example: "/etc/appliance/users"
	UsersFile string `toml:"users_file"`
	// TLS listener, trusted networks and limits: see smtp_ext.go.
	SMTPSecurity
}

// The outbound side.
type Relay struct {
	// The smarthost every package goes to. With Postfix as content filter: its re-injection
	// listener, 127.0.0.1:10026. MX lookup is not supported yet.
	// Value: host:port, required
	// Example: "127.0.0.1:10026"
	NextHop string `toml:"next_hop"`
}

// Delivery workers and retries.
type Queue struct {
	// Messages worked on at once (sealed, then delivered). A worker spends more of a message's
	// time waiting on fsync and on the next hop than holding a token session, so when left out it
	// is twice the sessions of the token that makes content keys (every message needs one), at
	// least 4 and at most 64: 16 with the default hsm.max_sessions of 8.
	// Value: integer 1..1024, default 2 x the content token's max_sessions (4..64)
	// Example: 16
	Workers int `toml:"workers"`
	// Waits before each further attempt after a temporary failure; the last repeats until
	// max_age.
	Retry []time.Duration `toml:"retry"`
	// How long a package may stay undelivered before it fails and the sender gets a DSN.
	MaxAge time.Duration `toml:"max_age"`
	// Bytes of messages held whole in memory at once, by the check at end of DATA and the
	// workers together (each counts a message at a multiple of its size, 3 and 6 times); a
	// message waits for its share, and one larger than the whole runs alone. Everything else
	// streams between socket and spool, so this bounds the appliance's memory; the Go
	// runtime's soft memory limit is set to it plus 64 MiB (unless GOMEMLIMIT is set). The
	// default kept peak RSS near 130 MB with 50 clients sending 10 MB messages. Raise it on a
	// machine with memory to spare and many large messages at once; 0 does not bound.
	// Value: bytes 0..2^40, default 50331648 (48 MiB)
	MemoryBytes int64 `toml:"memory_bytes"`
}

// The durable store: every message is on disk (fsync'd) before the client gets 250.
type Spool struct {
	// The spool directory, created if missing; one appliance process per directory.
	// Value: path, required
	// Example: "/var/spool/appliance"
	Dir string `toml:"dir"`
}

// Recipient certificates and trust anchors.
type Directory struct {
	// A folder of recipient certificates (PEM or DER, any file names, bundles). SIGHUP rereads
	// it.
	// Value: path, required
	// Example: "/etc/appliance/certs"
	Certs string `toml:"certs"`
	// Trust anchors and intermediates for recipients and signers.
	// Value: path, required
	// Example: "/etc/appliance/roots.pem"
	Roots string `toml:"roots"`
	// A folder of CRLs (PEM or DER), checked when present.
	// Value: path
	// Example: "/etc/appliance/crls"
	CRLs string `toml:"crls"`
	// Keep RFC 5321's case-sensitive local parts instead of folding them, which is what every
	// real mailbox does.
	CaseSensitiveLocalPart bool `toml:"case_sensitive_local_part"`
	// Where to look, in order: "folder", "ldap". Default: the folder, then LDAP when
	// configured.
	// Example: ["folder", "ldap"]
	Sources []string `toml:"sources"`
	// Fetch CRLs from distribution points starting with these http(s) prefixes.
	// Value: array of URLs
	// Example: ["http://crl.example.test/"]
	CRLURLPrefixes []string `toml:"crl_url_prefixes"`
	// Timeout of one CRL fetch.
	// Example: "10s"
	CRLFetchTimeout time.Duration `toml:"crl_fetch_timeout"`
	// An LDAP server to search: see directory_ext.go.
	LDAP LDAP `toml:"ldap"`
}

// Policy values. The string types keep the TOML spelling so a decision log
// line can print them as the operator wrote them.
const (
	BccIndividual = "individual"
	BccGroup      = "group"

	MissingCertReject    = "reject"
	MissingCertPlaintext = "plaintext"
	MissingCertDrop      = "drop"

	ProfileCompat = "compat"
	ProfileModern = "modern"

	RIDIssuerSerial = "issuer_serial"
	RIDSKI          = "ski"

	CertChoiceAll    = "all"
	CertChoiceNewest = "newest"

	BccHeaderStrip = "strip"
	BccHeaderOwn   = "own"

	UnknownRIDrop   = "drop"
	UnknownRIReject = "reject"

	PassThroughMissingDeliver = "deliver"
	PassThroughMissingRefuse  = "refuse"

	SignedOverEncryptedRefuse = "refuse"
	SignedOverEncryptedResign = "resign"

	LogText = "text"
	LogJSON = "json"
)

// How messages are split and sealed. The privacy rule holds under every setting: no package
// reveals a hidden recipient to anyone else.
type Policy struct {
	// Hidden (Bcc) recipients get a package each, or share one that names them to each other
	// only.
	// Value: "individual" (default) or "group"
	Bcc string `toml:"bcc"`
	// A recipient without a valid certificate: refused at RCPT (550 5.7.1), sent a signed-only
	// package of its own, or dropped with a DSN to the sender.
	// Value: "reject" (default), "plaintext" or "drop"
	MissingCert string `toml:"missing_cert"`
	// compat: EnvelopedData, AES-256-CBC, RSA PKCS#1 v1.5 (read by OpenSSL, gpgsm, NSS,
	// Outlook, Apple Mail). modern: AuthEnvelopedData, AES-256-GCM, RSA-OAEP (OpenSSL only).
	// Value: "compat" (default) or "modern"
	Profile string `toml:"profile"`
	// Add the sender's own certificate to every package, so the sender can read sent mail.
	SelfCopy bool `toml:"self_copy"`
	// How RecipientInfos name certificates; gpgsm 2.2 reads only issuer_serial.
	// Value: "issuer_serial" (default) or "ski"
	RID string `toml:"rid"`
	// Which of a recipient's valid certificates get a RecipientInfo.
	// Value: "all" (default) or "newest"
	CertChoice string `toml:"cert_choice"`
	// A submitted Bcc field is removed, or kept on a hidden recipient's own package naming only
	// them.
	// Value: "strip" (default) or "own"
	BccHeader string `toml:"bcc_header"`
	// A client-encrypted message with a RecipientInfo of nobody on the envelope: drop it from
	// every package, or refuse the message.
	// Value: "drop" (default) or "reject"
	UnknownRecipientInfo string `toml:"unknown_recipientinfo"`
	// An envelope recipient of a client-encrypted message with no RecipientInfo in it: DSN, or
	// deliver a package it cannot decrypt (the appliance never decrypts, so there is nothing
	// better to give it).
	// Value: "refuse" (default) or "deliver"
	PassThroughMissing string `toml:"passthrough_missing"`
	// A client's envelope under the client's signature: refuse it (554 5.7.1; the signature
	// covers every RecipientInfo, so a split breaks it), or split the envelope and sign each
	// package again with the sender's key on the HSM.
	// Value: "refuse" (default) or "resign"
	SignedOverEncrypted string `toml:"signed_over_encrypted"`
	// Header protection (RFC 9788): the signed and encrypted entity carries the message's header
	// fields (never a Bcc field), and the outer header shows "[...]" as Subject. A message gets it
	// when every recipient's domain has it on (README, Header protection).
	HeaderProtection bool           `toml:"header_protection"`
	Domains          []DomainPolicy `toml:"domain"`
}

// Per recipient domain, overrides profile, rid and header_protection for that domain. Only what
// is decided per recipient can be overridden: the Bcc mode shapes a whole message, so it has no
// per-domain form.
type DomainPolicy struct {
	// The recipient domain, matched exactly and case-insensitively.
	// Value: domain, required
	// Example: "example.org"
	Domain string `toml:"domain"`
	// Overrides policy.profile.
	// Value: "compat" or "modern"
	// Example: "modern"
	Profile string `toml:"profile"`
	// Overrides policy.rid.
	// Value: "issuer_serial" or "ski"
	// Example: "ski"
	RID string `toml:"rid"`
	// Overrides policy.header_protection.
	// Value: "on" or "off"
	// Example: "on"
	HeaderProtection string `toml:"header_protection"`
}

// ForDomain returns the policy that applies to recipients in domain: the
// global values with the matching override's non-empty fields on top.
// Domain matching is exact and case-insensitive; Domains is nil in the
// result.
func (p Policy) ForDomain(domain string) Policy {
	out := p
	out.Domains = nil
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	for _, d := range p.Domains {
		if d.Domain != domain {
			continue
		}
		if d.Profile != "" {
			out.Profile = d.Profile
		}
		if d.RID != "" {
			out.RID = d.RID
		}
		break
	}
	return out
}

// The daemon's log on stderr: one line per step with message and package ids, counts and
// durations, and an audit line per package (its envelope recipients and the owners of its
// RecipientInfos); never content or PINs.
type Log struct {
	// log/slog's text or JSON handler.
	// Value: "text" (default) or "json"
	Format string `toml:"format"`
	// The least severe level logged.
	// Value: "debug", "info" (default), "warn" or "error"
	Level string `toml:"level"`
}

// SlogLevel maps Level to slog; validation admits only names it knows.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// An address the appliance signs as, with its key on the token. Mail from any other address is
// refused.
type Sender struct {
	// The sender address (MAIL FROM and header From).
	// Value: address, required
	// Example: "alice@example.test"
	Address string `toml:"address"`
	// The signing key, a PKCS#11 URI on hsm.token.
	// Value: PKCS#11 URI, required
	// Example: "pkcs11:token=appliance;object=alice"
	Key string `toml:"key"`
	// The sender's certificate chain, leaf first.
	// Value: path, required
	// Example: "/etc/appliance/senders/alice.pem"
	Cert string `toml:"cert"`
}

// Sender returns the configured sender for addr, compared with the domain
// case-folded and, as for recipients, the local part too.
func (c *Config) Sender(addr string) (Sender, bool) {
	want := foldAddress(addr)
	for _, s := range c.Senders {
		if foldAddress(s.Address) == want {
			return s, true
		}
	}
	return Sender{}, false
}

// Defaults returns a Config holding every default value; it is what an
// empty file decodes to before validation.
func Defaults() *Config {
	host, _ := os.Hostname()
	return &Config{
		HSM: HSM{MaxSessions: 8},
		SMTP: SMTP{
			Listen:          "127.0.0.1:2525",
			Hostname:        host,
			MaxMessageBytes: 25 << 20,
			MaxRecipients:   1000,
			SMTPSecurity:    defaultSMTPSecurity(),
		},
		Queue: Queue{
			Retry:       defaultRetry(),
			MaxAge:      120 * time.Hour,
			MemoryBytes: 48 << 20,
		},
		Policy: Policy{
			Bcc:         BccIndividual,
			MissingCert: MissingCertReject,
			Profile:     ProfileCompat,
			SelfCopy:    true,
			RID:         RIDIssuerSerial,
			CertChoice:  CertChoiceAll,
			BccHeader:   BccHeaderStrip,

			UnknownRecipientInfo: UnknownRIDrop,
			PassThroughMissing:   PassThroughMissingRefuse,
			SignedOverEncrypted:  SignedOverEncryptedRefuse,
		},
		Log: Log{Format: LogText, Level: "info"},
	}
}

func defaultRetry() []time.Duration {
	return []time.Duration{time.Minute, 5 * time.Minute, 15 * time.Minute, time.Hour}
}

// Load reads, decodes and validates the file at path, resolving relative
// paths in it against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("failed to resolve config path %q: %w", path, err)
	}
	c, err := parse(data, filepath.Dir(abs))
	if err != nil {
		locate(err, path, nil)
		return nil, err
	}
	return c, nil
}

// Parse decodes and validates data. Relative paths stay as written, that is
// relative to the working directory; use [Load] for files.
func Parse(data []byte) (*Config, error) {
	return parse(data, "")
}

func parse(data []byte, baseDir string) (*Config, error) {
	c := Defaults()
	// Decoding over a non-nil slice reuses its backing array, so the
	// default retry schedule is put back only if the key was absent.
	c.Queue.Retry = nil
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, decodeError(err)
	}
	if !md.IsDefined("queue", "retry") {
		c.Queue.Retry = defaultRetry()
	}
	lines := keyLines(data)
	v := &validator{lines: lines}
	undecoded := md.Undecoded()
	for _, k := range undecoded {
		// An unknown table is listed along with its keys; name the keys,
		// or the table itself when it is empty.
		if hasChild(undecoded, k) {
			continue
		}
		if s := suggest(k.String()); s != "" {
			v.add(k.String(), ErrUnknownKey, "not a known setting; did you mean %s?", s)
		} else {
			v.add(k.String(), ErrUnknownKey, "not a known setting")
		}
	}
	// toml would read an integer as nanoseconds; nobody means that.
	var raw map[string]any
	if _, err := toml.Decode(string(data), &raw); err == nil {
		v.durationsAreStrings(raw)
	}
	c.resolve(baseDir)
	c.validate(v)
	if len(v.errs) > 0 {
		// File order reads best; keys absent from the file go last.
		sort.SliceStable(v.errs, func(i, j int) bool {
			li, lj := v.errs[i].(*Error).Line, v.errs[j].(*Error).Line
			return li != 0 && (lj == 0 || li < lj)
		})
		return nil, errors.Join(v.errs...)
	}
	return c, nil
}

func hasChild(keys []toml.Key, parent toml.Key) bool {
	for _, k := range keys {
		if len(k) > len(parent) && slices.Equal(k[:len(parent)], parent) {
			return true
		}
	}
	return false
}

// decodeError keeps toml's line number in our error shape.
func decodeError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &Error{Key: pe.LastKey, Line: pe.Position.Line, Err: ErrSyntax, Detail: pe.Message}
	}
	// Type mismatches come as plain errors in toml's own format.
	msg := err.Error()
	e := &Error{Err: ErrSyntax, Detail: msg}
	if m := tomlErrorPrefix.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Key, _ = strconv.Unquote(m[2])
		e.Detail = msg[len(m[0]):]
	}
	return e
}

var tomlErrorPrefix = regexp.MustCompile(`^toml: line (\d+) \(last key ("(?:[^"\\]|\\.)*")\): `)

func (c *Config) resolve(base string) {
	if base == "" {
		return
	}
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	// A bare module name ("libsofthsm2.so") is a dlopen search through the
	// library path, not a path relative to anything.
	if strings.ContainsRune(c.HSM.Module, filepath.Separator) {
		abs(&c.HSM.Module)
	}
	abs(&c.HSM.PINFile)
	abs(&c.SMTP.TLSCert)
	abs(&c.SMTP.TLSKey)
	abs(&c.SMTP.UsersFile)
	abs(&c.Spool.Dir)
	abs(&c.Directory.Certs)
	abs(&c.Directory.Roots)
	abs(&c.Directory.CRLs)
	c.Directory.resolve(abs)
	for i := range c.Senders {
		abs(&c.Senders[i].Cert)
	}
	c.resolveLists(abs)
	c.resolveCompliance(abs)
	c.resolveTokens(abs)
}
