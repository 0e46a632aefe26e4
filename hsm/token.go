package hsm

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThalesGroup/crypto11"
	"github.com/miekg/pkcs11"
)

// Config says which token to use. Options pass as a struct with exported fields; zero values take
// the documented defaults.
type Config struct {
	Module     string // path of the PKCS#11 library
	TokenLabel string // CKA_LABEL of the token
	// Select, when set, chooses the token by the token attributes of a PKCS#11 URI (token label,
	// serial, manufacturer, model). Its label, or its serial when it has none, finds the token;
	// every attribute it gives must then match. TokenLabel may be empty when Select is set.
	Select *URI
	// Name is what errors and logs call the token (the configuration's name); default its label.
	Name string
	// Roles are what the appliance asks of the token; Open refuses a token that lacks a mechanism
	// one of them needs. Zero means AllRoles.
	Roles Roles
	// Inspect opens the token to look at it (`keys mechanisms`): its mechanisms are listed but not
	// checked against Roles, and OAEP is not probed.
	Inspect     bool
	PIN         string        // user PIN; never logged, never in an error
	MaxSessions int           // sessions for content-key work, and as many for signing; default 4
	PoolTimeout time.Duration // longest wait for a free session when ctx allows longer; default 30s
}

// String leaves the PIN out, so a Config printed by mistake does not leak it.
func (c Config) String() string {
	sel := ""
	if c.Select != nil {
		sel = c.Select.String()
	}
	return fmt.Sprintf("hsm.Config{Module: %q, TokenLabel: %q, Select: %q, Name: %q, Roles: %q, PIN: <redacted>, MaxSessions: %d, PoolTimeout: %v}",
		c.Module, c.TokenLabel, sel, c.Name, c.Roles, c.MaxSessions, c.PoolTimeout)
}

// name is what errors call the token.
func (c Config) name() string {
	switch {
	case c.Name != "":
		return c.Name
	case c.TokenLabel != "":
		return c.TokenLabel
	case c.Select != nil && c.Select.Token != "":
		return c.Select.Token
	case c.Select != nil:
		return "serial " + c.Select.Serial
	}
	return ""
}

// GoString keeps %#v from printing the PIN too.
func (c Config) GoString() string { return c.String() }

const (
	defaultMaxSessions = 4
	defaultPoolTimeout = 30 * time.Second
)

// LoadPIN reads the PIN from file (its first line) or, when file is empty, from the environment
// variable env. Exactly one of them must be given.
func LoadPIN(file, env string) (string, error) {
	switch {
	case file != "" && env != "":
		return "", &Error{Op: "load PIN", Kind: ErrInvalidArgument, Err: errors.New("both a PIN file and a PIN variable given")}
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", &Error{Op: fmt.Sprintf("read PIN file %q", file), Kind: ErrInvalidArgument, Err: err}
		}
		pin, _, _ := strings.Cut(string(b), "\n")
		pin = strings.TrimRight(pin, "\r")
		if pin == "" {
			return "", &Error{Op: fmt.Sprintf("read PIN file %q", file), Kind: ErrInvalidArgument, Err: errors.New("file is empty")}
		}
		return pin, nil
	case env != "":
		pin := os.Getenv(env)
		if pin == "" {
			return "", &Error{Op: fmt.Sprintf("read PIN variable %q", env), Kind: ErrInvalidArgument, Err: errors.New("variable is unset or empty")}
		}
		return pin, nil
	}
	return "", &Error{Op: "load PIN", Kind: ErrInvalidArgument, Err: errors.New("neither a PIN file nor a PIN variable given")}
}

// Token is one logged-in PKCS#11 token. It is safe for concurrent use.
type Token struct {
	cfg Config

	// mu is held shared by every operation and exclusively by Reconnect and Close, so the
	// libraries are never torn down under a running call.
	mu     sync.RWMutex
	conn   *conn // nil after Close or a failed Reconnect
	gen    uint64
	closed bool

	// signerMu guards signers and every signer's cached lookup.
	signerMu sync.Mutex
	// signers caches Signer's answers by the URI string as given, because looking a key pair up
	// (C_FindObjects and the public key's attributes) cost as much as a tenth of a small
	// message's CPU. Object handles stay valid while the connection lives, so an entry is kept
	// until Reconnect or Close, or until signing with it fails in a way that says the key or its
	// handle is gone.
	signers map[string]*signer
	lookups atomic.Uint64 // key pair lookups made for signers; tests read it
}

// maxCachedSigners bounds the cache; the daemon names a handful of keys (senders, lists), and a
// caller that names more still works, uncached.
const maxCachedSigners = 1024

// conn is one generation of the connection: both libraries, the slot and our session pool.
type conn struct {
	c11   *crypto11.Context
	p11   *pkcs11.Ctx
	slot  uint
	token pkcs11.TokenInfo
	slotI pkcs11.SlotInfo
	lib   pkcs11.Info
	pool  *sessionPool
	// signs are the sessions signatures take (handleSigner), as many as crypto11 had for them,
	// so that signing waits for no content encryption and none for a signature.
	signs *sessionPool
	gen   uint64
	oaep  []crypto.Hash // hashes the token accepts for RSA-OAEP wrapping, strongest first
	mechs map[uint]bool // C_GetMechanismList at connect

	pubs    pubCache      // recipients' public keys on the token, for wrapping
	imports atomic.Uint64 // public key imports; tests read it
}

// Open loads the module, finds the token, logs in, checks that the token has the mechanisms its
// roles need and, for RoleContent, probes which OAEP hashes it supports.
func Open(cfg Config) (*Token, error) {
	if cfg.Roles == 0 {
		cfg.Roles = AllRoles
	}
	if cfg.Select != nil && cfg.TokenLabel == "" {
		cfg.TokenLabel = cfg.Select.Token
	}
	if cfg.MaxSessions == 0 {
		cfg.MaxSessions = defaultMaxSessions
	}
	if cfg.PoolTimeout == 0 {
		cfg.PoolTimeout = defaultPoolTimeout
	}
	switch {
	case cfg.Module == "":
		return nil, &Error{Op: "open token", Kind: ErrInvalidArgument, Err: errors.New("no module path")}
	case cfg.TokenLabel == "" && (cfg.Select == nil || cfg.Select.Serial == ""):
		return nil, &Error{Op: "open token", Kind: ErrInvalidArgument, Err: errors.New("no token label or serial")}
	case cfg.Roles&^AllRoles != 0:
		return nil, &Error{Op: "open token", Kind: ErrInvalidArgument, Err: fmt.Errorf("unknown roles %#x", uint8(cfg.Roles))}
	case cfg.MaxSessions < 1:
		return nil, &Error{Op: "open token", Kind: ErrInvalidArgument, Err: fmt.Errorf("max sessions %d is below 1", cfg.MaxSessions)}
	case cfg.PoolTimeout < 0:
		return nil, &Error{Op: "open token", Kind: ErrInvalidArgument, Err: fmt.Errorf("pool timeout %v is negative", cfg.PoolTimeout)}
	}
	t := &Token{cfg: cfg, gen: 1}
	c, err := connect(cfg, t.gen)
	if err != nil {
		return nil, err
	}
	t.conn = c
	return t, nil
}

// connect opens both libraries in the order that lets them share one loaded module: crypto11
// initialises it and logs in; miekg's Initialize then sees CKR_CRYPTOKI_ALREADY_INITIALIZED and its
// sessions inherit the login. Only crypto11 ever finalizes (on its last Close).
func connect(cfg Config, gen uint64) (*conn, error) {
	op := fmt.Sprintf("open token %q with module %q", cfg.name(), cfg.Module)
	if _, err := os.Stat(cfg.Module); err != nil {
		return nil, &Error{Op: op, Kind: ErrModule, Err: err}
	}
	serial := ""
	if cfg.TokenLabel == "" {
		serial = cfg.Select.Serial
	}
	c11, err := crypto11.Configure(&crypto11.Config{
		Path:        cfg.Module,
		TokenLabel:  cfg.TokenLabel,
		TokenSerial: serial,
		Pin:         cfg.PIN,
		MaxSessions: cfg.MaxSessions + 1, // crypto11 keeps one for itself
		// crypto11 waits forever when this is 0; ours never is.
		PoolWaitTimeout: cfg.PoolTimeout,
	})
	if err != nil {
		return nil, fail(op, err)
	}
	c := &conn{c11: c11, gen: gen}
	if err := c.openMiekg(cfg); err != nil {
		c.close()
		return nil, fail(op, err)
	}
	if cfg.Select != nil {
		if err := c.matchToken(cfg.Select); err != nil {
			c.close()
			return nil, &Error{Op: op, Kind: ErrTokenNotFound, Err: err}
		}
	}
	roles := cfg.Roles
	if cfg.Inspect {
		roles = 0
	}
	if err := c.probeMechanisms(cfg.name(), roles); err != nil {
		c.close()
		return nil, fail(op, err)
	}
	if roles&RoleContent != 0 {
		if err := c.probeOAEP(); err != nil {
			c.close()
			return nil, fail(op, err)
		}
	}
	return c, nil
}

func (c *conn) openMiekg(cfg Config) error {
	keepFreedHeap()
	p11 := pkcs11.New(cfg.Module)
	if p11 == nil {
		return &Error{Op: "load module", Kind: ErrModule}
	}
	if err := p11.Initialize(); err != nil && !errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)) {
		p11.Destroy()
		return &Error{Op: "initialize module", Kind: ErrModule, Err: err}
	}
	c.p11 = p11
	slots, err := p11.GetSlotList(true)
	if err != nil {
		return err
	}
	for _, s := range slots {
		ti, err := p11.GetTokenInfo(s)
		if err != nil {
			return err
		}
		if cfg.TokenLabel != "" && ti.Label == cfg.TokenLabel || cfg.TokenLabel == "" && ti.SerialNumber == cfg.Select.Serial {
			c.slot, c.token = s, ti
			c.slotI, err = p11.GetSlotInfo(s)
			if err != nil {
				return err
			}
			c.lib, err = p11.GetInfo()
			if err != nil {
				return err
			}
			c.pool = newSessionPool(p11, s, cfg.PIN, cfg.MaxSessions, cfg.PoolTimeout)
			c.signs = newSessionPool(p11, s, cfg.PIN, cfg.MaxSessions, cfg.PoolTimeout)
			return nil
		}
	}
	return &Error{Op: "find token", Kind: ErrTokenNotFound}
}

// close tears down in the reverse order of connect: our sessions, then crypto11 (which finalizes
// the module if it holds the last reference), then our handle on the library.
func (c *conn) close() {
	if c.p11 != nil {
		c.pubs.close(c.p11)
	}
	if c.pool != nil {
		c.pool.close()
	}
	if c.signs != nil {
		c.signs.close()
	}
	if c.c11 != nil {
		_ = c.c11.Close()
	}
	if c.p11 != nil {
		c.p11.Destroy()
	}
}

// probeKey is a public key with no known use: wrapping a throwaway AES key for it is how the
// token is asked which OAEP hashes it accepts. Only its public half exists.
const probeKey = `-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAzpFcEH930T2yZSo7nX2r
Y8Pky0IFdeOuLw5xPA5fj0onCjFu0lNfF8MLB4UMd8bb1K4i0OOYpLERw2iMJDXB
vWt0p9mmr5BNfeFvi3NFOJJlejAHxw9og0CVqUKcsA7cHcwosggtJ/hAHxHryLFX
VuN9jcKSloyaHRvglqI/v5VAm73vIc4H5TC9gkY8rLZrkzJvngTjTFZFScVFEwSR
uTbtqCAtJ8SHS7AaoHIDHT4xqmjaxQ4Z/lWG0TgXSl6eDgZhQ0n9UNTQA/zkx5AS
3DXVrPg5bkcfARO3dt+qQUIk6z+bnc6z9iBmvSftuX6IqwjuHYEDao6WcWPEMx3B
0wIDAQAB
-----END PUBLIC KEY-----`

// oaepCandidates are tried strongest first. SoftHSM 2.6 accepts only SHA-1 (CKR_ARGUMENTS_BAD
// for SHA-256); real HSMs take SHA-256, which is what CMS peers should see when possible.
var oaepCandidates = []crypto.Hash{crypto.SHA256, crypto.SHA1}

func (c *conn) probeOAEP() error {
	block, _ := pem.Decode([]byte(probeKey))
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return err
	}
	pub := k.(*rsa.PublicKey)
	s, err := c.pool.get(context.Background(), "probe OAEP support")
	if err != nil {
		return err
	}
	defer func() { c.pool.put(s, err) }()
	key, err := c.p11.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, cekTemplate())
	if err != nil {
		return fmt.Errorf("failed to generate probe key: %w", err)
	}
	defer c.p11.DestroyObject(s, key)
	// PKCS#1 v1.5 wrapping must work on any usable token; if it fails, the probe proves nothing
	// about OAEP and the connection is not usable.
	plain, _ := rsaMechanism(0)
	if _, err = c.wrap(s, plain, key, pub); err != nil {
		return fmt.Errorf("failed to wrap probe key with RSA PKCS#1 v1.5: %w", err)
	}
	c.oaep = nil
	for _, h := range oaepCandidates {
		mech, merr := rsaMechanism(h)
		if merr != nil {
			return merr
		}
		if _, werr := c.wrap(s, mech, key, pub); werr == nil {
			c.oaep = append(c.oaep, h)
		}
	}
	return nil
}

// begin takes the shared lock and returns the live connection; the caller must call t.end.
func (t *Token) begin(op string) (*conn, error) {
	t.mu.RLock()
	switch {
	case t.closed:
		t.mu.RUnlock()
		return nil, &Error{Op: op, Kind: ErrClosed}
	case t.conn == nil:
		t.mu.RUnlock()
		return nil, &Error{Op: op, Kind: ErrTokenGone, Err: errors.New("not connected; Reconnect has not succeeded yet")}
	}
	return t.conn, nil
}

func (t *Token) end() { t.mu.RUnlock() }

// withSession runs f on a pooled session of the live connection.
func (t *Token) withSession(ctx context.Context, op string, f func(c *conn, s pkcs11.SessionHandle) error) error {
	c, err := t.begin(op)
	if err != nil {
		return err
	}
	defer t.end()
	s, err := c.pool.get(ctx, op)
	if err != nil {
		return err
	}
	err = f(c, s)
	c.pool.put(s, err)
	if err != nil {
		return fail(op, err)
	}
	return nil
}

// Close logs out and unloads. Content keys die with it; Signers stop working.
func (t *Token) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	t.dropSigners()
	if t.conn != nil {
		t.conn.close()
		t.conn = nil
	}
	return nil
}

// Reconnect closes both libraries and opens them again, for use after a temporary error. It waits
// for running operations to finish. The module is only re-initialised (and so re-reads the token)
// when no other Token in the process uses it; the daemon has one. If the token is still missing
// the error is temporary and operations fail with ErrTokenGone until a Reconnect succeeds. Content
// keys made before it are lost (using them gives ErrTokenGone); Signers from Signer and
// GenerateKeyPair find their key again on next use, and Signer looks every key up afresh.
func (t *Token) Reconnect() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return &Error{Op: "reconnect", Kind: ErrClosed}
	}
	// A reconnect is also how a token that was removed, replaced or re-initialised comes back:
	// its keys must be looked up again, not taken from before.
	t.dropSigners()
	if t.conn != nil {
		t.conn.close()
		t.conn = nil
	}
	t.gen++
	c, err := connect(t.cfg, t.gen)
	if err != nil {
		// A token that is still missing at reconnect time is the run-time loss not yet over:
		// temporary, though errors.Is still finds the specific cause. A refused PIN needs an
		// operator.
		if IsTemporary(err) || errors.Is(err, ErrPINIncorrect) || errors.Is(err, ErrInvalidArgument) {
			return fail("reconnect", err)
		}
		return &Error{Op: "reconnect", Kind: ErrTokenGone, Err: err}
	}
	t.conn = c
	return nil
}

// OAEPHash is the strongest hash the token accepts for RSA-OAEP key wrapping (label hash and
// MGF1), probed at Open and Reconnect; 0 when it supports none.
func (t *Token) OAEPHash() crypto.Hash {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.conn == nil || len(t.conn.oaep) == 0 {
		return 0
	}
	return t.conn.oaep[0]
}

func (c *conn) supportsOAEP(h crypto.Hash) bool {
	for _, x := range c.oaep {
		if x == h {
			return true
		}
	}
	return false
}

// matchToken checks the token, slot and library attributes of u against this connection.
func (c *conn) matchToken(u *URI) error {
	type check struct{ name, want, have string }
	checks := []check{
		{"token", u.Token, c.token.Label},
		{"manufacturer", u.Manufacturer, c.token.ManufacturerID},
		{"serial", u.Serial, c.token.SerialNumber},
		{"model", u.Model, c.token.Model},
		{"slot-description", u.SlotDescription, c.slotI.SlotDescription},
		{"slot-manufacturer", u.SlotManufacturer, c.slotI.ManufacturerID},
		{"library-manufacturer", u.LibraryManufacturer, c.lib.ManufacturerID},
		{"library-description", u.LibraryDescription, c.lib.LibraryDescription},
	}
	for _, k := range checks {
		if k.want != "" && k.want != strings.TrimRight(k.have, " ") {
			return fmt.Errorf("%s is %q on this token, not %q", k.name, strings.TrimRight(k.have, " "), k.want)
		}
	}
	if u.SlotID != nil && *u.SlotID != c.slot {
		return fmt.Errorf("slot-id is %d here, not %d", c.slot, *u.SlotID)
	}
	if u.LibraryVersion != "" {
		v := c.lib.LibraryVersion
		full := fmt.Sprintf("%d.%d", v.Major, v.Minor)
		if u.LibraryVersion != full && u.LibraryVersion != fmt.Sprint(v.Major) {
			return fmt.Errorf("library-version is %s here, not %s", full, u.LibraryVersion)
		}
	}
	return nil
}
