// Package auth decides who may submit mail to the appliance and which sender
// addresses each submitter may use. Whoever can submit can make the appliance
// sign, so this is what stands between the HSM's keys and a signing oracle.
//
// # Identities
//
// A client is identified either by SMTP AUTH against a [Users] file, or by
// its address falling in a trusted [Network] (datacenter hosts that cannot
// authenticate). Each identity carries a list of sender patterns; a client
// with neither identity is anonymous and may use no sender at all, which is
// what keeps the appliance from being an open relay.
//
// # Sender patterns
//
// A pattern is an exact address ("alice@example.test", compared without
// regard to case, as the configuration compares senders), "@example.test"
// for any address in that domain, or "*" for any address. Patterns widen
// what an identity may ask for; whether the appliance has a key for the
// address is decided elsewhere.
//
// # Users file
//
// One user per line, "name:hash:pattern,pattern,..."; blank lines and lines
// starting with '#' are ignored. The hash is bcrypt ("$2a$", "$2b$", "$2y$")
// or argon2id in the PHC string format
// ("$argon2id$v=19$m=65536,t=3,p=2$salt$hash", unpadded base64), as written
// by [HashPassword]. Since hashes contain no ':', the first and last colon
// delimit the fields. The file must not be readable or writable by others
// (mode 0640 or stricter) because the hashes can be attacked offline.
package auth

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

var (
	// ErrBadCredentials: unknown user or wrong password. The two are not
	// told apart, to the client or in the error.
	ErrBadCredentials = errors.New("invalid credentials")
	// ErrNotAuthenticated: the client neither authenticated nor connects
	// from a trusted network, so it may not send as anyone.
	ErrNotAuthenticated = errors.New("client not authenticated")
	// ErrSenderNotAllowed: the identity may not use this sender address.
	ErrSenderNotAllowed = errors.New("sender not allowed for this identity")
	// ErrUsersFile: the users file is malformed or unsafe; the error names
	// the line.
	ErrUsersFile = errors.New("invalid users file")
)

// Limits on the users file keep a corrupt or hostile file from costing
// unbounded memory or CPU at start.
const (
	maxUserLine   = 4096
	maxArgonMem   = 1 << 20 // KiB: 1 GiB
	maxArgonTime  = 64
	maxBcryptCost = 16
)

// User is one entry of the users file.
type User struct {
	Name    string
	Senders []string // patterns, see the package doc
	hash    string
}

// Users is a parsed users file. It is immutable and safe for concurrent use.
type Users struct {
	byName map[string]*User
	// dummy is checked against for unknown users so that a miss costs
	// about as much as a wrong password and timing does not reveal which
	// user names exist.
	dummy string
}

// LoadUsers reads the users file at path, refusing it when others may read
// or write it.
func LoadUsers(path string) (*Users, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open users file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat users file %q: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("failed to load users file %q: not a regular file: %w", path, ErrUsersFile)
	}
	if perm := st.Mode().Perm(); perm&0o027 != 0 {
		return nil, fmt.Errorf("failed to load users file %q: mode %04o gives others access, want 0640 or stricter: %w", path, perm, ErrUsersFile)
	}
	u, err := ParseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("failed to load users file %q: %w", path, err)
	}
	return u, nil
}

// ParseUsers parses a users file (see the package doc).
func ParseUsers(r io.Reader) (*Users, error) {
	u := &Users{byName: make(map[string]*User)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), maxUserLine)
	line := 0
	var last *User
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		user, err := parseUserLine(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if _, dup := u.byName[user.Name]; dup {
			return nil, fmt.Errorf("line %d: user %q listed twice: %w", line, user.Name, ErrUsersFile)
		}
		u.byName[user.Name] = user
		last = user
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read users file after line %d: %v: %w", line, err, ErrUsersFile)
	}
	// An unknown name is checked against a real user's hash (the answer
	// is ignored), so it costs what a wrong password costs.
	u.dummy = dummyBcrypt
	if last != nil {
		u.dummy = last.hash
	}
	return u, nil
}

// dummyBcrypt is a cost-10 hash of a random password nobody knows, for an
// empty users file.
const dummyBcrypt = "$2a$10$qFhlrJS49QjEBhCgk2mER.G4ruIPCegncjkOqxCN.icRHeZMJgW0a"

func parseUserLine(text string) (*User, error) {
	first := strings.IndexByte(text, ':')
	last := strings.LastIndexByte(text, ':')
	if first <= 0 || last == first {
		return nil, fmt.Errorf("want name:hash:senders: %w", ErrUsersFile)
	}
	name, hash, senders := text[:first], text[first+1:last], text[last+1:]
	if err := checkUserName(name); err != nil {
		return nil, fmt.Errorf("user %q: %v: %w", name, err, ErrUsersFile)
	}
	if err := checkHash(hash); err != nil {
		return nil, fmt.Errorf("user %q: %v: %w", name, err, ErrUsersFile)
	}
	user := &User{Name: name, hash: hash}
	for _, p := range strings.Split(senders, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if err := CheckPattern(p); err != nil {
			return nil, fmt.Errorf("user %q: %v: %w", name, err, ErrUsersFile)
		}
		user.Senders = append(user.Senders, strings.ToLower(p))
	}
	if len(user.Senders) == 0 {
		// A user who may send as nobody is a typo, not a setting.
		return nil, fmt.Errorf("user %q: no sender addresses: %w", name, ErrUsersFile)
	}
	return user, nil
}

// checkUserName admits printable ASCII without spaces or colons: SASL PLAIN
// could carry more, but a name an operator cannot type is a mistake.
func checkUserName(name string) error {
	if len(name) > 255 {
		return errors.New("name longer than 255 octets")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f || c == ':' {
			return fmt.Errorf("invalid character %q in name", c)
		}
	}
	return nil
}

// CheckPattern reports whether p is a valid sender pattern.
func CheckPattern(p string) error {
	if p == "*" {
		return nil
	}
	at := strings.LastIndexByte(p, '@')
	if at < 0 || at == len(p)-1 {
		return fmt.Errorf("sender %q is not an address, @domain or *", p)
	}
	if strings.ContainsAny(p, " \t<>*,:") || strings.IndexByte(p[:at], '@') >= 0 {
		return fmt.Errorf("sender %q is not an address, @domain or *", p)
	}
	return nil
}

func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return fmt.Errorf("bad bcrypt hash: %v", err)
		}
		if cost > maxBcryptCost {
			return fmt.Errorf("bcrypt cost %d above %d", cost, maxBcryptCost)
		}
		return nil
	case strings.HasPrefix(h, "$argon2id$"):
		_, err := parseArgon2id(h)
		return err
	}
	return errors.New("hash is neither bcrypt ($2b$...) nor argon2id ($argon2id$...)")
}

type argonParams struct {
	mem     uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

func parseArgon2id(h string) (*argonParams, error) {
	f := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(f) != 6 || f[1] != "argon2id" {
		return nil, errors.New("bad argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if f[2] != "v=19" {
		return nil, fmt.Errorf("bad argon2id hash: version %q, want v=19", f[2])
	}
	p := &argonParams{}
	seen := 0
	for _, kv := range strings.Split(f[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			p.mem, seen = uint32(n), seen|1
		case "t":
			p.time, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("bad argon2id parallelism %d", n)
			}
			p.threads, seen = uint8(n), seen|4
		default:
			return nil, fmt.Errorf("bad argon2id parameter %q", kv)
		}
	}
	if seen != 7 {
		return nil, errors.New("bad argon2id hash: want m, t and p")
	}
	if p.time < 1 || p.time > maxArgonTime || p.threads < 1 || p.mem < 8*uint32(p.threads) || p.mem > maxArgonMem {
		return nil, fmt.Errorf("argon2id parameters m=%d,t=%d,p=%d out of range", p.mem, p.time, p.threads)
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil || len(p.salt) < 8 {
		return nil, errors.New("bad argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil || len(p.key) < 16 || len(p.key) > 64 {
		return nil, errors.New("bad argon2id hash value")
	}
	return p, nil
}

// Authenticate checks password for user. It returns [ErrBadCredentials]
// for an unknown user and for a wrong password alike, after the same work.
func (u *Users) Authenticate(_ context.Context, name, password string) error {
	user, ok := u.byName[name]
	hash := u.dummy
	if ok {
		hash = user.hash
	}
	if !verify(hash, password) || !ok {
		return fmt.Errorf("failed to authenticate %q: %w", name, ErrBadCredentials)
	}
	return nil
}

// Lookup returns the user called name.
func (u *Users) Lookup(name string) (*User, bool) {
	user, ok := u.byName[name]
	return user, ok
}

// Len is the number of users.
func (u *Users) Len() int { return len(u.byName) }

func verify(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		p, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(password), p.salt, p.time, p.mem, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(got, p.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
}

// Argon2id parameters of [HashPassword]: RFC 9106's second recommended
// option (64 MiB, t=3), with p=2 for a small appliance.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns an argon2id PHC string for password, with a random
// salt read from rand, for a users file.
func HashPassword(password string, rand io.Reader) (string, error) {
	salt := make([]byte, 16)
	if _, err := io.ReadFull(rand, salt); err != nil {
		return "", fmt.Errorf("failed to read salt: %w", err)
	}
	p := &argonParams{mem: argonMemory, time: argonTime, threads: argonThreads, salt: salt}
	return formatArgon(p, password), nil
}

func formatArgon(p *argonParams, password string) string {
	key := argon2.IDKey([]byte(password), p.salt, p.time, p.mem, p.threads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.mem, p.time, p.threads,
		base64.RawStdEncoding.EncodeToString(p.salt), base64.RawStdEncoding.EncodeToString(key))
}

// Network is a trusted client network and the senders its hosts may use
// without authenticating.
type Network struct {
	Prefix  netip.Prefix
	Senders []string // patterns, see the package doc
}

// Authorizer answers "may this client use this sender address". The zero
// value trusts nobody. Fields must not change once it is in use.
type Authorizer struct {
	Users    *Users    // nil: nobody can authenticate
	Networks []Network // checked in order; the first match decides
}

// Authorize returns nil if the client at addr, authenticated as authUser
// ("" when it did not), may use sender as MAIL FROM or header From/Sender.
// An authenticated client is judged by its user's patterns only, even from
// a trusted network: authenticating must never widen what a host could
// already do nor mix two identities. It returns [ErrNotAuthenticated] for
// an anonymous client from an untrusted network and [ErrSenderNotAllowed]
// when the identity does not cover sender.
func (a *Authorizer) Authorize(addr netip.Addr, authUser, sender string) error {
	var patterns []string
	switch {
	case authUser != "":
		var user *User
		if a.Users != nil {
			user, _ = a.Users.Lookup(authUser)
		}
		if user == nil {
			// The session only passes users that authenticated here.
			return fmt.Errorf("failed to authorize %q: unknown user %q: %w", sender, authUser, ErrNotAuthenticated)
		}
		patterns = user.Senders
	default:
		n := a.network(addr)
		if n == nil {
			return fmt.Errorf("failed to authorize %q from %s: %w", sender, addr, ErrNotAuthenticated)
		}
		patterns = n.Senders
	}
	if !Match(patterns, sender) {
		return fmt.Errorf("failed to authorize %q: %w", sender, ErrSenderNotAllowed)
	}
	return nil
}

// Trusted reports whether addr is in a trusted network.
func (a *Authorizer) Trusted(addr netip.Addr) bool { return a.network(addr) != nil }

func (a *Authorizer) network(addr netip.Addr) *Network {
	if !addr.IsValid() {
		return nil
	}
	addr = addr.Unmap() // "::ffff:10.0.0.1" is 10.0.0.1
	for i := range a.Networks {
		if a.Networks[i].Prefix.Contains(addr) {
			return &a.Networks[i]
		}
	}
	return nil
}

// Match reports whether sender matches one of patterns. The null sender
// ("") matches no pattern, not even "*": nobody signs as nobody.
func Match(patterns []string, sender string) bool {
	if sender == "" {
		return false
	}
	s := strings.ToLower(sender)
	at := strings.LastIndexByte(s, '@')
	for _, p := range patterns {
		switch {
		case p == "*":
			return true
		case strings.HasPrefix(p, "@"):
			if at >= 0 && s[at:] == strings.ToLower(p) {
				return true
			}
		case strings.ToLower(p) == s:
			return true
		}
	}
	return false
}
