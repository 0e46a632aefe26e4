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

// Config is the whole appliance configuration. Field names follow the TOML
// keys of DESIGN section 10.
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
}

// HSM selects the PKCS#11 module and token. Exactly one of PINFile and
// PINEnv is set; the PIN itself is read by [Config.PIN].
type HSM struct {
	Module      string `toml:"module"`
	Token       string `toml:"token"`
	PINFile     string `toml:"pin_file"`
	PINEnv      string `toml:"pin_env"`
	MaxSessions int    `toml:"max_sessions"`
	// RequireUp and ReconnectMax: see hsm_ext.go.
	HSMHealth
}

// SMTP configures the submission listener.
type SMTP struct {
	Listen          string `toml:"listen"`
	Hostname        string `toml:"hostname"`
	MaxMessageBytes int64  `toml:"max_message_bytes"`
	MaxRecipients   int    `toml:"max_recipients"`
	// TLSCert and TLSKey enable STARTTLS; both or neither.
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// RequireAuth refuses MAIL FROM before AUTH; needs UsersFile.
	RequireAuth bool   `toml:"require_auth"`
	UsersFile   string `toml:"users_file"`
	// TLS listener, trusted networks and limits: see smtp_ext.go.
	SMTPSecurity
}

// Relay is the outbound side.
type Relay struct {
	// NextHop is the smarthost as host:port.
	NextHop string `toml:"next_hop"`
}

// Queue tunes the delivery workers and the retry schedule.
type Queue struct {
	Workers int `toml:"workers"`
	// Retry is the wait before each further attempt after a temporary
	// failure; the last entry repeats until MaxAge.
	Retry []time.Duration `toml:"retry"`
	// MaxAge is how long a package may stay undelivered before it fails
	// and a DSN goes to the sender.
	MaxAge time.Duration `toml:"max_age"`
}

// Spool is the durable message store.
type Spool struct {
	Dir string `toml:"dir"`
}

// Directory locates recipient certificates and trust anchors.
type Directory struct {
	Certs string `toml:"certs"`
	Roots string `toml:"roots"`
	// CRLs is an optional folder of CRLs from the CAs of Roots and Certs.
	CRLs string `toml:"crls"`
	// CaseSensitiveLocalPart keeps RFC 5321's case-sensitive local parts;
	// the default folds them, which is what every real mailbox does.
	CaseSensitiveLocalPart bool `toml:"case_sensitive_local_part"`
	// Sources, CRL fetching and LDAP: see directory_ext.go.
	Sources         []string      `toml:"sources"`
	CRLURLPrefixes  []string      `toml:"crl_url_prefixes"`
	CRLFetchTimeout time.Duration `toml:"crl_fetch_timeout"`
	LDAP            LDAP          `toml:"ldap"`
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

// Policy is the global sealing policy; Domains override parts of it for
// recipients of one domain.
type Policy struct {
	Bcc         string `toml:"bcc"`
	MissingCert string `toml:"missing_cert"`
	Profile     string `toml:"profile"`
	SelfCopy    bool   `toml:"self_copy"`
	RID         string `toml:"rid"`
	CertChoice  string `toml:"cert_choice"`
	BccHeader   string `toml:"bcc_header"`
	// UnknownRecipientInfo decides what happens to a client-encrypted
	// message with a RecipientInfo that belongs to no envelope recipient
	// (DESIGN section 6): "drop" it from every package, or "reject" the
	// message at end of DATA.
	UnknownRecipientInfo string `toml:"unknown_recipientinfo"`
	// PassThroughMissing decides what happens to an envelope recipient of a
	// client-encrypted message that has no RecipientInfo in it: "refuse"
	// with a DSN, or "deliver" a package it cannot decrypt (the appliance
	// never decrypts, so there is nothing better to give it).
	PassThroughMissing string `toml:"passthrough_missing"`
	// SignedOverEncrypted decides what happens to a client's envelope under
	// the client's signature: "refuse" it (the signature covers every
	// RecipientInfo, so a split breaks it), or "resign": split the inner
	// envelope and sign each package again with the sender's key.
	SignedOverEncrypted string         `toml:"signed_over_encrypted"`
	Domains             []DomainPolicy `toml:"domain"`
}

// DomainPolicy is one [[policy.domain]] override. Empty fields inherit the
// global value. Only what is decided per recipient can be overridden: the
// Bcc mode shapes a whole message, so it has no per-domain form.
type DomainPolicy struct {
	Domain  string `toml:"domain"`
	Profile string `toml:"profile"`
	RID     string `toml:"rid"`
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

// Log configures the daemon's slog handler.
type Log struct {
	Format string `toml:"format"`
	Level  string `toml:"level"`
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

// Sender maps an address the appliance may sign as to its key on the token
// and its certificate chain (leaf first).
type Sender struct {
	Address string `toml:"address"`
	Key     string `toml:"key"`
	Cert    string `toml:"cert"`
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
			Workers: 4,
			Retry:   defaultRetry(),
			MaxAge:  120 * time.Hour,
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
	return parse(data, filepath.Dir(abs))
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
		v.add(k.String(), ErrUnknownKey, "not a known setting")
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
}
