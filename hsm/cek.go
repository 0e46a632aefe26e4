package hsm

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/miekg/pkcs11"
)

// chunkSize is the C_EncryptUpdate unit: single-part calls are about 3x slower on large bodies,
// and 64 KB keeps the per-call overhead negligible while memory stays flat.
const chunkSize = 64 << 10

// chunkPool holds the plaintext buffers: one per encryption would be a 64 KB allocation per
// message, most of it never touched by a small one.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// CEK is an AES content-encryption key held as a session object on the token. Its value never
// leaves the token except wrapped for a recipient. It lives until Destroy, Close or Reconnect;
// call Destroy when done, or session objects pile up on the token. Safe for concurrent use.
type CEK struct {
	t      *Token
	handle pkcs11.ObjectHandle
	gen    uint64

	mu        sync.RWMutex // held exclusively by Destroy so no call uses a freed handle
	destroyed bool
}

// cekTemplate: a session key that may be wrapped (for each recipient) but never read.
func cekTemplate() []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
		pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
		pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
	}
}

// unwrapTemplate is cekTemplate without CKA_VALUE_LEN, which C_UnwrapKey refuses
// (CKR_ATTRIBUTE_READ_ONLY): the length comes from the wrapped value.
func unwrapTemplate() []*pkcs11.Attribute {
	var out []*pkcs11.Attribute
	for _, a := range cekTemplate() {
		if a.Type != pkcs11.CKA_VALUE_LEN {
			out = append(out, a)
		}
	}
	return out
}

// GenerateCEK makes a fresh AES-256 key on the token.
func (t *Token) GenerateCEK(ctx context.Context) (*CEK, error) {
	if err := t.needContent("generate content key"); err != nil {
		return nil, err
	}
	var k *CEK
	err := t.withSession(ctx, "generate content key", func(c *conn, s pkcs11.SessionHandle) error {
		h, err := c.p11.GenerateKey(s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)}, cekTemplate())
		if err != nil {
			return err
		}
		k = &CEK{t: t, handle: h, gen: c.gen}
		return nil
	})
	return k, err
}

// UnwrapCEK decrypts wrapped with the private key named by keyURI into a new CEK on the token,
// without the key value ever reaching the process: the mailing-list path, where a CEK wrapped for
// the list is re-wrapped for each member. oaepHash 0 means RSAES-PKCS1-v1_5. wrapped comes from
// untrusted mail; anything malformed gives ErrUnwrap.
func (t *Token) UnwrapCEK(ctx context.Context, keyURI string, wrapped []byte, oaepHash crypto.Hash) (*CEK, error) {
	op := fmt.Sprintf("unwrap content key with %q", keyURI)
	if err := t.needContent(op); err != nil {
		return nil, err
	}
	u, err := ParseURI(keyURI)
	if err != nil {
		return nil, err
	}
	if len(wrapped) == 0 {
		// miekg's UnwrapKey indexes wrapped[0].
		return nil, &Error{Op: op, Kind: ErrUnwrap, Err: errors.New("wrapped key is empty")}
	}
	var k *CEK
	err = t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		mech, err := c.rsaMechanism(oaepHash)
		if err != nil {
			return err
		}
		priv, err := c.findObject(s, u, pkcs11.CKO_PRIVATE_KEY)
		if err != nil {
			return err
		}
		h, err := c.unwrapCEK(s, op, mech, priv, wrapped)
		if err != nil {
			return err
		}
		k = &CEK{t: t, handle: h, gen: c.gen}
		return nil
	})
	return k, err
}

// unwrapCEK unwraps wrapped with the unwrapping key into a content key with unwrapTemplate and
// proves it an AES key. A wrapped key the token refuses while it is healthy is ErrUnwrap.
func (c *conn) unwrapCEK(s pkcs11.SessionHandle, op string, mech []*pkcs11.Mechanism, unwrapping pkcs11.ObjectHandle, wrapped []byte) (pkcs11.ObjectHandle, error) {
	h, err := c.p11.UnwrapKey(s, mech, unwrapping, wrapped, unwrapTemplate())
	if errors.Is(err, pkcs11.Error(pkcs11.CKR_ATTRIBUTE_READ_ONLY)) {
		// opencryptoki 3.8.1 refuses CKA_EXTRACTABLE in an unwrap template; the keys it
		// unwraps are extractable by default, so the list can still re-wrap them.
		var tmpl []*pkcs11.Attribute
		for _, a := range unwrapTemplate() {
			if a.Type != pkcs11.CKA_EXTRACTABLE {
				tmpl = append(tmpl, a)
			}
		}
		h, err = c.p11.UnwrapKey(s, mech, unwrapping, wrapped, tmpl)
	}
	if err != nil {
		// SoftHSM answers a bad blob with CKR_GENERAL_ERROR, which also means trouble
		// with the token; only a healthy token makes it the input's fault.
		if badWrapped(err) || errors.Is(err, pkcs11.Error(pkcs11.CKR_GENERAL_ERROR)) && c.healthy() == nil {
			return 0, &Error{Op: op, Kind: ErrUnwrap, Err: err}
		}
		return 0, err
	}
	// SoftHSM sets no CKA_VALUE_LEN on unwrapped keys, so a trial encryption is what proves
	// the value is a usable AES key (a 5-byte "key" fails C_EncryptInit). It ignores ctx: a
	// cancellation here must not pass for a bad key.
	if _, err := c.stream(context.Background(), s, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, make([]byte, 16))}, h, bytes.NewReader(nil), io.Discard); err != nil {
		_ = c.p11.DestroyObject(s, h)
		if badWrapped(err) || c.healthy() == nil {
			return 0, &Error{Op: op, Kind: ErrUnwrap, Err: fmt.Errorf("unwrapped value is not an AES key: %w", err)}
		}
		return 0, err
	}
	return h, nil
}

// needContent refuses content-key work on a token not opened for it: its mechanisms were not
// checked and its OAEP hashes not probed.
func (t *Token) needContent(op string) error {
	if t.cfg.Roles&RoleContent == 0 {
		return &Error{Op: op, Kind: ErrInvalidArgument, Err: fmt.Errorf("token %q does not have role content", t.cfg.name())}
	}
	return nil
}

// badWrapped tells input faults (permanent) from token trouble (maybe temporary).
func badWrapped(err error) bool {
	var p pkcs11.Error
	if !errors.As(err, &p) {
		return false
	}
	switch p {
	case pkcs11.CKR_ENCRYPTED_DATA_INVALID, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE, pkcs11.CKR_WRAPPED_KEY_INVALID,
		pkcs11.CKR_WRAPPED_KEY_LEN_RANGE, pkcs11.CKR_DATA_INVALID, pkcs11.CKR_DATA_LEN_RANGE,
		pkcs11.CKR_TEMPLATE_INCONSISTENT, pkcs11.CKR_ATTRIBUTE_VALUE_INVALID, pkcs11.CKR_KEY_SIZE_RANGE,
		pkcs11.CKR_KEY_TYPE_INCONSISTENT, pkcs11.CKR_FUNCTION_FAILED:
		return true
	}
	return false
}

// use runs f with the CEK's handle on a pooled session, refusing a destroyed key or one from an
// earlier connection (its session, and so the key, is gone).
func (k *CEK) use(ctx context.Context, op string, f func(c *conn, s pkcs11.SessionHandle) error) error {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if k.destroyed {
		return &Error{Op: op, Kind: ErrKeyDestroyed}
	}
	return k.t.withSession(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		if c.gen != k.gen {
			return &Error{Op: op, Kind: ErrTokenGone, Err: errors.New("content key was lost when the token reconnected")}
		}
		return f(c, s)
	})
}

// Destroy removes the key from the token. Further use gives ErrKeyDestroyed. Destroying a key lost
// in a reconnect, or twice, is not an error.
func (k *CEK) Destroy(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.destroyed {
		return nil
	}
	err := k.t.withSession(ctx, "destroy content key", func(c *conn, s pkcs11.SessionHandle) error {
		if c.gen != k.gen {
			return nil
		}
		return c.p11.DestroyObject(s, k.handle)
	})
	if err == nil || !IsTemporary(err) {
		k.destroyed = true
	}
	return err
}

// EncryptCBC encrypts plaintext with AES-CBC and PKCS#7 padding (CKM_AES_CBC_PAD) under the key and
// the 16-byte iv, streaming 64 KB chunks through C_EncryptUpdate.
func (k *CEK) EncryptCBC(ctx context.Context, iv []byte, plaintext io.Reader, ciphertext io.Writer) error {
	const op = "encrypt content with AES-CBC"
	if len(iv) != 16 {
		return &Error{Op: op, Kind: ErrInvalidArgument, Err: fmt.Errorf("IV is %d bytes, not 16", len(iv))}
	}
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_CBC_PAD, append([]byte(nil), iv...))}
	return k.use(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		final, err := c.stream(ctx, s, mech, k.handle, plaintext, ciphertext)
		if err != nil {
			return err
		}
		_, err = ciphertext.Write(final)
		return err
	})
}

// EncryptGCM encrypts plaintext with AES-GCM under the key, the 12-byte nonce and aad, writes the
// ciphertext without the tag and returns the 16-byte tag.
func (k *CEK) EncryptGCM(ctx context.Context, nonce, aad []byte, plaintext io.Reader, ciphertext io.Writer) ([]byte, error) {
	const op = "encrypt content with AES-GCM"
	if len(nonce) != 12 {
		return nil, &Error{Op: op, Kind: ErrInvalidArgument, Err: fmt.Errorf("nonce is %d bytes, not 12", len(nonce))}
	}
	var tag []byte
	err := k.use(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		params := pkcs11.NewGCMParams(nonce, aad, 128)
		defer params.Free()
		mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}
		final, err := c.stream(ctx, s, mech, k.handle, plaintext, ciphertext)
		if err != nil {
			return err
		}
		// C_EncryptFinal returns whatever ciphertext the token still held, then the tag.
		if len(final) < 16 {
			return fmt.Errorf("token returned a %d-byte GCM final block, expected the 16-byte tag", len(final))
		}
		if _, err := ciphertext.Write(final[:len(final)-16]); err != nil {
			return err
		}
		tag = append([]byte(nil), final[len(final)-16:]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return tag, nil
}

// stream runs a multi-part encryption and returns C_EncryptFinal's output for the caller to
// interpret. On a read, write or context failure mid-way it still calls C_EncryptFinal: the
// operation must end on this session, which is not closed (that would destroy the keys it made).
func (c *conn) stream(ctx context.Context, s pkcs11.SessionHandle, mech []*pkcs11.Mechanism, key pkcs11.ObjectHandle, in io.Reader, out io.Writer) ([]byte, error) {
	if err := c.p11.EncryptInit(s, mech, key); err != nil {
		return nil, err
	}
	abort := func(err error) ([]byte, error) {
		_, _ = c.p11.EncryptFinal(s)
		return nil, err
	}
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	for {
		if err := ctx.Err(); err != nil {
			return abort(err)
		}
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			part, err := c.p11.EncryptUpdate(s, buf[:n])
			if err != nil {
				// A failed C_EncryptUpdate has already ended the operation.
				return nil, err
			}
			if _, err := out.Write(part); err != nil {
				return abort(fmt.Errorf("failed to write ciphertext: %w", err))
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return abort(fmt.Errorf("failed to read plaintext: %w", rerr))
		}
	}
	return c.p11.EncryptFinal(s)
}

// WrapRSA encrypts the key for pub with C_WrapKey: RSAES-PKCS1-v1_5 when oaepHash is 0, else
// RSAES-OAEP with oaepHash for the label hash and MGF1 and an empty label. The public key is
// imported as a session object the first time it is seen on a connection and kept for later
// wraps (see pubCache).
func (k *CEK) WrapRSA(ctx context.Context, pub *rsa.PublicKey, oaepHash crypto.Hash) ([]byte, error) {
	const op = "wrap content key"
	if pub == nil || pub.N == nil || pub.E <= 0 {
		return nil, &Error{Op: op, Kind: ErrInvalidArgument, Err: errors.New("no RSA public key")}
	}
	var wrapped []byte
	err := k.use(ctx, op, func(c *conn, s pkcs11.SessionHandle) error {
		mech, err := c.rsaMechanism(oaepHash)
		if err != nil {
			return err
		}
		wrapped, err = c.wrap(s, mech, k.handle, pub)
		return err
	})
	return wrapped, err
}

func (c *conn) wrap(s pkcs11.SessionHandle, mech []*pkcs11.Mechanism, key pkcs11.ObjectHandle, pub *rsa.PublicKey) ([]byte, error) {
	id := pubKeyID(pub)
	if e := c.pubs.get(c, id, pub); e != nil {
		wrapped, err := c.p11.WrapKey(s, mech, e.h, key)
		gone := handleGone(err)
		c.pubs.release(c.p11, e, gone)
		if !gone {
			return wrapped, err
		}
	}
	h, err := c.importPub(s, pub)
	if err != nil {
		return nil, err
	}
	defer c.p11.DestroyObject(s, h)
	return c.p11.WrapKey(s, mech, h, key)
}

func (c *conn) importPub(s pkcs11.SessionHandle, pub *rsa.PublicKey) (pkcs11.ObjectHandle, error) {
	c.imports.Add(1)
	h, err := c.p11.CreateObject(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_RSA),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, false),
		pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
		pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, false),
		pkcs11.NewAttribute(pkcs11.CKA_VERIFY, false),
		pkcs11.NewAttribute(pkcs11.CKA_MODULUS, pub.N.Bytes()),
		pkcs11.NewAttribute(pkcs11.CKA_PUBLIC_EXPONENT, big.NewInt(int64(pub.E)).Bytes()),
	})
	if err != nil {
		return 0, fmt.Errorf("failed to import recipient public key: %w", err)
	}
	return h, nil
}

// pubCache keeps recipients' public keys imported as session objects, so a recipient seen
// before costs one C_WrapKey, not an import, a wrap and a destroy. The objects are made on a
// session of the cache's own, which the pool never hands out or closes: a session object dies
// with its session. The cache goes with its connection (Reconnect, Close).
//
// When it is full, a key seen for the first time gets in one time in admitOneIn, in the place
// of a key chosen at random. Not least recently used, and not every new key: a list larger than
// the cache walks its members in the same order at every post, and LRU would then evict each key
// just before it is needed again (no hits at all); admitting one new key in 8 keeps most of what
// is cached through such a walk, while a recipient who keeps getting mail still gets in after a
// few wraps (the cache does not stay with whoever came first). An evicted object is destroyed
// once no wrap uses its handle any more: a token may give a destroyed object's handle to the
// next one made, and SoftHSM2 crashes when an object goes while a wrap uses it.
type pubCache struct {
	mu     sync.Mutex // held across an import or destroy, so the cache's session has one call at a time
	s      pkcs11.SessionHandle
	opened bool
	m      map[string]*pubEntry
	all    []*pubEntry // m's entries, for the random choice
	max    int         // 0 is maxCachedPubs
	rnd    *rand.Rand  // eviction and admission: a fixed seed, so tests see the same choices
}

type pubEntry struct {
	id      string
	h       pkcs11.ObjectHandle
	at      int  // index in all while cached
	users   int  // wraps using h now
	evicted bool // out of the cache: destroy when the last user is done
	gone    bool // the token said h is invalid: nothing to destroy
}

// maxCachedPubs bounds the cache (a few MB of token memory with RSA-2048 keys).
const maxCachedPubs = 4096

// admitOneIn is how often a key not cached gets into a full cache: one time in admitOneIn.
const admitOneIn = 8

func pubKeyID(pub *rsa.PublicKey) string {
	return strconv.Itoa(pub.E) + ":" + string(pub.N.Bytes())
}

// get returns pub's cached object, importing it first (and evicting another if the cache is
// full), or nil when it is not admitted or the import failed: the wrap then imports the key
// for itself. The caller uses e.h and then calls release.
func (p *pubCache) get(c *conn, id string, pub *rsa.PublicKey) *pubEntry {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e, ok := p.m[id]; ok {
		e.users++
		return e
	}
	if !p.opened {
		s, err := c.pool.openSession()
		if err != nil {
			return nil
		}
		p.s, p.opened = s, true
	}
	limit := p.max
	if limit <= 0 {
		limit = maxCachedPubs
	}
	if p.rnd == nil {
		p.rnd = rand.New(rand.NewPCG(1, 2))
	}
	if len(p.all) >= limit {
		if p.rnd.IntN(admitOneIn) != 0 {
			return nil
		}
		for len(p.all) >= limit {
			p.evictLocked(c.p11, p.all[p.rnd.IntN(len(p.all))])
		}
	}
	h, err := c.importPub(p.s, pub)
	if err != nil {
		return nil
	}
	if p.m == nil {
		p.m = map[string]*pubEntry{}
	}
	e := &pubEntry{id: id, h: h, at: len(p.all), users: 1}
	p.m[id] = e
	p.all = append(p.all, e)
	return e
}

// release ends a wrap's use of e; gone says the token no longer knows e.h.
func (p *pubCache) release(p11 *pkcs11.Ctx, e *pubEntry, gone bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e.users--
	if gone {
		e.gone = true
		p.evictLocked(p11, e)
		return
	}
	if e.evicted && e.users == 0 && !e.gone {
		p.destroyLocked(p11, e)
	}
}

// evictLocked takes e out of the cache, destroying its object now if no wrap uses it.
func (p *pubCache) evictLocked(p11 *pkcs11.Ctx, e *pubEntry) {
	if e.evicted {
		return
	}
	e.evicted = true
	delete(p.m, e.id)
	last := p.all[len(p.all)-1]
	p.all[e.at], last.at = last, e.at
	p.all = p.all[:len(p.all)-1]
	if e.users == 0 && !e.gone {
		p.destroyLocked(p11, e)
	}
}

func (p *pubCache) destroyLocked(p11 *pkcs11.Ctx, e *pubEntry) {
	e.gone = true
	if p.opened {
		_ = p11.DestroyObject(p.s, e.h)
	}
}

// close closes the cache's session, and with it every cached object.
func (p *pubCache) close(p11 *pkcs11.Ctx) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.opened {
		_ = p11.CloseSession(p.s)
	}
	for _, e := range p.all {
		e.evicted, e.gone = true, true
	}
	p.opened, p.m, p.all = false, nil, nil
}

// handleGone reports a cached object the token no longer knows.
func handleGone(err error) bool {
	var code pkcs11.Error
	return errors.As(err, &code) && (code == pkcs11.CKR_WRAPPING_KEY_HANDLE_INVALID ||
		code == pkcs11.CKR_OBJECT_HANDLE_INVALID || code == pkcs11.CKR_KEY_HANDLE_INVALID)
}

// rsaMechanism is the key-transport mechanism for oaepHash, refusing hashes the token did not
// accept when probed.
func (c *conn) rsaMechanism(oaepHash crypto.Hash) ([]*pkcs11.Mechanism, error) {
	if oaepHash != 0 && !c.supportsOAEP(oaepHash) {
		return nil, &Error{Op: fmt.Sprintf("use RSA-OAEP with %v", oaepHash), Kind: ErrOAEPHash,
			Err: fmt.Errorf("the token accepts %v", c.oaep)}
	}
	return rsaMechanism(oaepHash)
}

func rsaMechanism(oaepHash crypto.Hash) ([]*pkcs11.Mechanism, error) {
	if oaepHash == 0 {
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS, nil)}, nil
	}
	var hashMech, mgf uint
	switch oaepHash {
	case crypto.SHA1:
		hashMech, mgf = pkcs11.CKM_SHA_1, pkcs11.CKG_MGF1_SHA1
	case crypto.SHA224:
		hashMech, mgf = pkcs11.CKM_SHA224, pkcs11.CKG_MGF1_SHA224
	case crypto.SHA256:
		hashMech, mgf = pkcs11.CKM_SHA256, pkcs11.CKG_MGF1_SHA256
	case crypto.SHA384:
		hashMech, mgf = pkcs11.CKM_SHA384, pkcs11.CKG_MGF1_SHA384
	case crypto.SHA512:
		hashMech, mgf = pkcs11.CKM_SHA512, pkcs11.CKG_MGF1_SHA512
	default:
		return nil, &Error{Op: fmt.Sprintf("use RSA-OAEP with %v", oaepHash), Kind: ErrOAEPHash}
	}
	params := pkcs11.NewOAEPParams(hashMech, mgf, pkcs11.CKZ_DATA_SPECIFIED, nil)
	return []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_RSA_PKCS_OAEP, params)}, nil
}

// findObject finds the one object of class (unless u.Type says otherwise) that u names.
func (c *conn) findObject(s pkcs11.SessionHandle, u *URI, class uint) (pkcs11.ObjectHandle, error) {
	if err := c.matchToken(u); err != nil {
		return 0, &Error{Op: fmt.Sprintf("find %q", u.String()), Kind: ErrKeyNotFound, Err: err}
	}
	if u.Object == "" && len(u.ID) == 0 {
		return 0, &Error{Op: fmt.Sprintf("find %q", u.String()), Kind: ErrBadURI, Err: errors.New("names no object or id")}
	}
	if u.Type != "" {
		class = map[string]uint{"private": pkcs11.CKO_PRIVATE_KEY, "public": pkcs11.CKO_PUBLIC_KEY,
			"cert": pkcs11.CKO_CERTIFICATE, "secret-key": pkcs11.CKO_SECRET_KEY, "data": pkcs11.CKO_DATA}[u.Type]
	}
	tmpl := []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}
	if u.Object != "" {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_LABEL, u.Object))
	}
	if len(u.ID) > 0 {
		tmpl = append(tmpl, pkcs11.NewAttribute(pkcs11.CKA_ID, u.ID))
	}
	hs, err := c.findObjects(s, tmpl, 2)
	if err != nil {
		return 0, err
	}
	switch len(hs) {
	case 0:
		if err := c.healthy(); err != nil {
			return 0, err
		}
		return 0, &Error{Op: fmt.Sprintf("find %q", u.String()), Kind: ErrKeyNotFound}
	case 1:
		return hs[0], nil
	}
	return 0, &Error{Op: fmt.Sprintf("find %q", u.String()), Kind: ErrAmbiguousKey}
}

func (c *conn) findObjects(s pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) ([]pkcs11.ObjectHandle, error) {
	if err := c.p11.FindObjectsInit(s, tmpl); err != nil {
		return nil, err
	}
	hs, _, err := c.p11.FindObjects(s, max)
	if ferr := c.p11.FindObjectsFinal(s); err == nil {
		err = ferr
	}
	return hs, err
}

// healthy asks the token for its info. A token whose object store vanished (SoftHSM with its
// directory removed) still finds nothing without complaint, so "not found" and "bad input" are
// only trusted after this succeeds.
func (c *conn) healthy() error {
	if _, err := c.p11.GetTokenInfo(c.slot); err != nil {
		return &Error{Op: "check token", Kind: ErrTokenGone, Err: err}
	}
	return nil
}
