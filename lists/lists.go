// Package lists is the mail list agent (RFC 2634 section 4, README, Secure mailing lists).
//
// A list has a key pair on the token and a member file. A post to the list becomes one package
// per member, and each package names only that member: its only RecipientInfos are the member's,
// its envelope has only the member, and its header keeps To as the list address. The members
// never learn of each other, and the poster learns nothing from the packages either.
//
// Mail already encrypted to the list is never decrypted: its content key is unwrapped on the
// token with the list key into a session key (UnwrapCEK) and wrapped again for each member; the
// encrypted content goes out byte for byte. Plain mail is signed with the list key, encrypted
// once under a fresh content key and wrapped the same way. Either way the list then signs each
// member's application/pkcs7-mime entity (the outer layer of RFC 2634's triple wrapping, sent as
// multipart/signed) with an mlExpansionHistory attribute that carries the history the post
// arrived with plus this expansion. The outer signature is per member, because it covers the
// member's RecipientInfo; with an RSA list key that signature, not the key wrap, bounds the
// expansion rate.
//
// A list key is RSA or EC P-256. Posts reach an RSA list through key transport (UnwrapCEK) and a
// P-256 list through key agreement: the post's KeyAgreeRecipientInfo is read by cms and the
// content key agreed and unwrapped on the token ([KeyAgreeToken]); the list signs with ECDSA.
//
// Memory grows with the member count only by what differs per member, about 1.5 KB: the head
// of its envelope (the RecipientInfo) and its signature less the list's certificates. The
// ciphertext, its base64 lines and the certificates are kept once per expansion; the member's
// entity is hashed for the signature as it is made and written again, from the same pieces,
// only when the queue writes the package, so no member's 100 KB entity (for a 50 KB post) is
// ever held, and writing a package makes next to no garbage.
//
// Every signature, encryption and key wrap is seal's (Sealer.ListContent, Sealer.WrapMember,
// NewMemberSigner); the agent decides who gets a package and assembles it.
package lists

import (
	"bufio"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"appliance/cms"
	"appliance/directory"
	"appliance/internal/procs"
	"appliance/queue"
	"appliance/retry"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"
)

// Token is what the agent needs of the HSM: the list key signs, and OAEPHash is the key
// transport to members of an AuthEnvelopedData post.
type Token interface {
	Signer(ctx context.Context, keyURI string) (crypto.Signer, error)
	OAEPHash() crypto.Hash
}

// Options wire an Agent.
type Options struct {
	Directory *directory.Directory
	Token     Token
	// Sealer makes a plain post's content and each member's key wrap and signature.
	Sealer *seal.Sealer
	// Policy: CaseSensitiveLocalPart, CertChoice and Profile (a plain post's encryption).
	Policy split.Policy
	// Hostname names this relay in the Received field of every package.
	Hostname string
	// IsSender reports whether a normalized address is a configured sender: a list may not be
	// one (its outgoing mail would be expanded instead of sealed).
	IsSender func(norm string) bool
	Now      func() time.Time
	// Logger gets one line per expansion and one per member skipped; nil discards.
	Logger *slog.Logger
	// Expanded, when set, is told after each expansion that made its packages (or found nobody
	// to make one for) how many packages list (its configured Address) got and how many members
	// were skipped by reason (SkipNoCertificate, SkipUnusableCertificate; only reasons that
	// occurred). It names lists and reasons, never a member. A post expanded again after a
	// temporary failure is told again: its members were skipped again.
	Expanded func(list string, packages int, skipped map[string]int)
}

// Agent expands posts to the configured lists. It is safe for concurrent use.
type Agent struct {
	opts Options
	mu   sync.Mutex // serialises Set and Reload
	defs []List
	tok  ListToken
	cur  atomic.Pointer[listSet]
}

// New makes an agent with no lists (Set gives it some).
func New(o Options) *Agent {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.IsSender == nil {
		o.IsSender = func(string) bool { return false }
	}
	return &Agent{opts: o}
}

// List is one mail list the appliance expands (a [[list]] of the configuration).
type List struct {
	Address string
	// KeyURI is the PKCS#11 URI of the list's key pair: RSA (CKA_UNWRAP) or EC P-256
	// (CKA_DERIVE); it unwraps content keys of posts and signs what the list sends.
	KeyURI string
	// Chain is the list's certificate first, then intermediates; the certificate is what posters
	// encrypt to and what members verify the list's signature with.
	Chain []*x509.Certificate
	// MembersFile holds one address per line; blank lines and lines starting with # are ignored.
	// [Agent.Reload] reads it again.
	MembersFile string
	Posters     Posters
}

// Posters says who may post to a list. The zero value admits nobody.
type Posters struct {
	Anyone    bool     // every sender, the null sender included
	Members   bool     // the list's members
	Addresses []string // these senders, whether members or not
}

// ListToken is what the mail list agent needs of the HSM beyond [Token].
type ListToken interface {
	// UnwrapCEK decrypts wrapped with the private key keyURI names into a content key that stays
	// on the token (oaepHash 0: RSAES-PKCS1-v1_5). An error wrapping [ErrWrappedKey] says the
	// wrapped key itself is bad (the message's fault, permanent); any other error is taken as
	// trouble with the token (temporary: the message stays queued).
	UnwrapCEK(ctx context.Context, keyURI string, wrapped []byte, oaepHash crypto.Hash) (cms.ContentKey, error)
}

// KeyAgreeToken is a [ListToken] that also holds EC list keys: a list whose certificate is EC
// needs one.
type KeyAgreeToken interface {
	// UnwrapAgreedCEK agrees on a post's key with the EC private key keyURI names (ECDH with the
	// post's ephemeral key, the X9.63 KDF) and unwraps the content key into a key that stays on
	// the token. Errors are sorted as UnwrapCEK's.
	UnwrapAgreedCEK(ctx context.Context, keyURI string, ka *cms.KeyAgreement) (cms.ContentKey, error)
}

var (
	// ErrWrappedKey is how a [ListToken] reports a wrapped content key it cannot unwrap.
	ErrWrappedKey = errors.New("wrapped content key rejected")
	// ErrNotPoster reports a sender the list's posting rule does not admit.
	ErrNotPoster = errors.New("sender may not post to the list")
	// ErrNotList reports an address that is not a configured list.
	ErrNotList = errors.New("not a mail list")
	// ErrListLoop reports a message whose mlExpansionHistory already has this list.
	ErrListLoop = cms.ErrListLoop
	// ErrHistoryFull reports a message expanded ub-ml-expansion-history (64) times already.
	ErrHistoryFull = cms.ErrHistoryFull
	// ErrBadHistory reports an mlExpansionHistory attribute that cannot be read.
	ErrBadHistory = cms.ErrBadHistory
	// ErrNotForList reports an encrypted post with no RecipientInfo for the list's certificate.
	ErrNotForList = errors.New("message is not encrypted to the list")
	// ErrListConfig reports a list definition SetLists refuses.
	ErrListConfig = errors.New("invalid mail list")
	// ErrNoMembers reports a post that no member could get (none has a usable certificate).
	ErrNoMembers = errors.New("no member of the list has a usable certificate")
)

// MembersError is a line of a members file that is not an address.
type MembersError struct {
	File string
	Line int
	Err  error
}

func (e *MembersError) Error() string {
	return fmt.Sprintf("members file %q line %d: %v", e.File, e.Line, e.Err)
}

func (e *MembersError) Unwrap() error { return e.Err }

// ParseMembers reads a members file: one address per line, blank lines and lines whose first
// non-blank character is # ignored. Addresses come back normalized as the pipeline compares
// them, without duplicates, sorted.
func ParseMembers(r io.Reader, caseSensitiveLocalPart bool) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	seen := map[string]bool{}
	var out []string
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if strings.ContainsAny(line, "<>,") {
			return nil, &MembersError{Line: n, Err: errors.New("give one bare address per line")}
		}
		a, err := split.Normalize(line, caseSensitiveLocalPart)
		if err != nil {
			return nil, &MembersError{Line: n, Err: fmt.Errorf("%q is not an address: %w", line, err)}
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("failed to read members: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// Why a list member got no package, as [Options.Expanded] reports it.
const (
	// SkipNoCertificate: the directory has no valid certificate for the member.
	SkipNoCertificate = "no_certificate"
	// SkipUnusableCertificate: the member's certificate is valid, but the content key cannot be
	// wrapped for it as policy asks (no subjectKeyIdentifier where SKI ids are wanted, a key
	// the token cannot wrap for).
	SkipUnusableCertificate = "unusable_certificate"
)

type listSet struct {
	byAddr map[string]*mailList
	tok    ListToken
}

type mailList struct {
	List
	addr    string // normalized
	listID  string // List-Id value (RFC 2919)
	members []string
	member  map[string]bool
	poster  map[string]bool
}

// Set makes the agent expand lists (nil or empty: none), reading every members file.
// tok unwraps content keys for mail encrypted to a list; it is usually the same token as
// Options.Token. On error nothing changes.
func (a *Agent) Set(lists []List, tok ListToken) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(lists) > 0 && tok == nil {
		return fmt.Errorf("failed to set lists: %w: no token", ErrListConfig)
	}
	set, err := a.load(lists, tok)
	if err != nil {
		return err
	}
	a.defs = append([]List(nil), lists...)
	a.tok = tok
	a.cur.Store(set)
	return nil
}

// Reload reads every list's members file again (on SIGHUP) and swaps the new members in whole;
// on error the old members stay in force.
func (a *Agent) Reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	set, err := a.load(a.defs, a.tok)
	if err != nil {
		return err
	}
	a.cur.Store(set)
	return nil
}

func (a *Agent) load(lists []List, tok ListToken) (*listSet, error) {
	cs := a.opts.Policy.CaseSensitiveLocalPart
	set := &listSet{byAddr: map[string]*mailList{}, tok: tok}
	for _, l := range lists {
		addr, err := split.Normalize(l.Address, cs)
		if err != nil {
			return nil, fmt.Errorf("failed to set list %q: %w: %w", l.Address, ErrListConfig, err)
		}
		if set.byAddr[addr] != nil {
			return nil, fmt.Errorf("failed to set list %q: %w: configured twice", l.Address, ErrListConfig)
		}
		if a.opts.IsSender(addr) {
			// A sender's outgoing mail would be expanded instead of sealed.
			return nil, fmt.Errorf("failed to set list %q: %w: also a sender", l.Address, ErrListConfig)
		}
		if l.KeyURI == "" {
			return nil, fmt.Errorf("failed to set list %q: %w: no key", l.Address, ErrListConfig)
		}
		if len(l.Chain) == 0 {
			return nil, fmt.Errorf("failed to set list %q: %w: no certificate", l.Address, ErrListConfig)
		}
		if err := checkListCert(l.Chain[0], tok); err != nil {
			return nil, fmt.Errorf("failed to set list %q: %w: %w", l.Address, ErrListConfig, err)
		}
		f, err := os.Open(l.MembersFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read members of %q: %w", l.Address, err)
		}
		members, err := ParseMembers(f, cs)
		f.Close()
		var me *MembersError
		if errors.As(err, &me) {
			me.File = l.MembersFile
		}
		if err != nil {
			return nil, fmt.Errorf("failed to read members of %q: %w", l.Address, err)
		}
		ml := &mailList{List: l, addr: addr, member: map[string]bool{}, poster: map[string]bool{}}
		ml.listID = split.ListID(addr)
		for _, m := range members {
			if m == addr {
				continue // a list that is its own member would only loop
			}
			ml.members = append(ml.members, m)
			ml.member[m] = true
		}
		for _, a := range l.Posters.Addresses {
			n, err := split.Normalize(a, cs)
			if err != nil {
				return nil, fmt.Errorf("failed to set list %q: %w: poster %q: %w", l.Address, ErrListConfig, a, err)
			}
			ml.poster[n] = true
		}
		set.byAddr[addr] = ml
	}
	return set, nil
}

// checkListCert accepts an RSA list certificate, or an EC P-256 one whose key usage (when the
// certificate has the extension) allows keyAgreement (posts are encrypted to it) and
// digitalSignature (the list signs), with a token that can agree keys.
func checkListCert(cert *x509.Certificate, tok ListToken) error {
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return nil
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return fmt.Errorf("certificate has an EC key on %s, not P-256", pub.Curve.Params().Name)
		}
		const need = x509.KeyUsageKeyAgreement | x509.KeyUsageDigitalSignature
		if cert.KeyUsage != 0 && cert.KeyUsage&need != need {
			return errors.New("the EC certificate's key usage must allow keyAgreement and digitalSignature")
		}
		if _, ok := tok.(KeyAgreeToken); !ok {
			return errors.New("the token cannot unwrap content keys for an EC list key")
		}
		return nil
	}
	return fmt.Errorf("certificate has a %T key, not RSA or EC P-256", cert.PublicKey)
}

func (a *Agent) list(addr string) *mailList {
	set := a.cur.Load()
	if set == nil {
		return nil
	}
	key, err := split.Normalize(addr, a.opts.Policy.CaseSensitiveLocalPart)
	if err != nil {
		return nil
	}
	return set.byAddr[key]
}

// IsList reports whether addr is a mail list the appliance expands (README, Secure mailing lists).
func (a *Agent) IsList(addr string) bool { return a.list(addr) != nil }

// CheckPoster refuses a sender the posting rule of list does not admit; the error wraps
// [ErrNotPoster] (or [ErrNotList]).
func (a *Agent) CheckPoster(_ context.Context, list, mailFrom string) error {
	l := a.list(list)
	if l == nil {
		return fmt.Errorf("%w: %q", ErrNotList, list)
	}
	if l.Posters.Anyone {
		return nil
	}
	from, err := split.Normalize(mailFrom, a.opts.Policy.CaseSensitiveLocalPart)
	if err == nil && (l.poster[from] || l.Posters.Members && l.member[from]) {
		return nil
	}
	return fmt.Errorf("%w: %q to %q", ErrNotPoster, mailFrom, list)
}

// Split separates the list addresses among env's recipients from the rest.
func (a *Agent) Split(env queue.Envelope) (lists []string, rest queue.Envelope) {
	rest = env
	rest.RcptTo = nil
	for _, r := range env.RcptTo {
		if a.IsList(r) {
			lists = append(lists, r)
		} else {
			rest.RcptTo = append(rest.RcptTo, r)
		}
	}
	return lists, rest
}

// listParallel bounds the members prepared at once: each holds an HSM session for its wrap and
// signature, and a buffer of one encoded envelope.
const listParallel = 4

// Expand makes one package per member of list. A post the list refuses comes back as a
// refusal of the list address (for the DSN); an error is temporary (the message waits).
func (a *Agent) Expand(ctx context.Context, id string, env queue.Envelope, list string, msg []byte) (*queue.Sealed, error) {
	log := a.opts.Logger.With("id", id, "list", list)
	l := a.list(list)
	refuse := func(status string, err error) (*queue.Sealed, error) {
		log.Info("list post refused", "status", status, "err", err)
		return &queue.Sealed{Refused: []queue.Refusal{{Recipient: list, Status: status, Reason: refusalText(err)}}}, nil
	}
	if l == nil {
		return refuse("5.1.1", fmt.Errorf("%w: %q", ErrNotList, list))
	}
	if err := a.CheckPoster(ctx, list, env.MailFrom); err != nil {
		return refuse("5.7.1", err)
	}
	start := time.Now()
	post, err := smime.ReadPost(msg)
	if errors.Is(err, ErrHistoryFull) {
		return refuse("5.4.6", err)
	}
	if err != nil {
		return refuse("5.6.0", err)
	}
	history, err := l.extendHistory(post.History, a.opts.Now())
	if err != nil {
		return refuse("5.4.6", err)
	}

	tok := a.cur.Load().tok
	signer, err := a.opts.Token.Signer(ctx, l.KeyURI)
	if err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to find the key of list %q: %w", l.Address, err))
	}
	x := &expansion{a: a, l: l, signer: signer, history: history, now: a.opts.Now()}
	defer x.destroyKey(ctx)
	if post.Enveloped != nil {
		err = x.unwrap(ctx, tok, post.Enveloped)
	} else {
		err = x.encrypt(ctx, post.Entity)
	}
	switch {
	case errors.Is(err, ErrNotForList), errors.Is(err, ErrWrappedKey):
		return refuse("5.7.5", err)
	case errors.Is(err, cms.ErrUnsupported):
		return refuse("5.6.0", err)
	case err != nil:
		return nil, retry.Temporary(err)
	}
	x.shared = a.listHeader(id, env, l, post.Outer, x.smimeType)
	if x.sign, err = seal.NewMemberSigner(x.sender(), x.history, x.now); err != nil {
		return nil, retry.Temporary(fmt.Errorf("failed to sign as list %q: %w", l.Address, err))
	}

	out, skipped, err := x.fanOut(ctx, log)
	if err != nil {
		return nil, retry.Temporary(err)
	}
	if a.opts.Expanded != nil {
		a.opts.Expanded(l.Address, len(out.Packages), skipped)
	}
	if len(out.Packages) == 0 {
		return refuse("5.7.1", fmt.Errorf("failed to expand %q: %w", l.Address, ErrNoMembers))
	}
	log.Info("list expanded", "packages", len(out.Packages),
		"skipped", skipped[SkipNoCertificate]+skipped[SkipUnusableCertificate],
		"encrypted_post", post.Enveloped != nil, "history", len(post.History)+1, "bytes", len(msg),
		"duration", time.Since(start))
	return out, nil
}

// refusalText is what a DSN says about a refused post; the errors above name only the poster and
// the list, both known to whoever gets the DSN.
func refusalText(err error) string {
	for _, e := range []error{ErrNotPoster, ErrListLoop, ErrHistoryFull, ErrBadHistory, ErrNotForList, ErrWrappedKey, ErrNotList, ErrNoMembers} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "message cannot be sent to the list"
}

// expansion is one post being expanded to one list's members.
type expansion struct {
	a       *Agent
	l       *mailList
	signer  crypto.Signer
	history cms.Attribute
	now     time.Time

	key       cms.ContentKey
	oaep      crypto.Hash // key transport for members: 0 is RSAES-PKCS1-v1_5
	smimeType string
	// Exactly one of these holds the shared encrypted content.
	enveloped *cms.Enveloped
	ec        *cms.EncryptedContent

	shared *smime.ListParts
	sign   *cms.DigestSigner // the members' signatures (seal.NewMemberSigner)
}

func (x *expansion) destroyKey(ctx context.Context) {
	if d, ok := x.key.(interface{ Destroy(context.Context) error }); ok {
		d.Destroy(context.WithoutCancel(ctx))
	}
}

// unwrap takes the content key of a post encrypted to the list onto the token.
func (x *expansion) unwrap(ctx context.Context, tok ListToken, env *cms.Enveloped) error {
	if _, ok := x.l.Chain[0].PublicKey.(*ecdsa.PublicKey); ok {
		return x.unwrapAgreed(ctx, tok, env)
	}
	var mine *cms.RecipientInfo
	for _, ri := range env.RecipientInfos {
		if ri.Matches(x.l.Chain[0]) {
			mine = ri
			break
		}
	}
	if mine == nil {
		return fmt.Errorf("failed to expand: %w", ErrNotForList)
	}
	h, err := mine.OAEPHash()
	if err != nil {
		return fmt.Errorf("failed to expand: %w", err)
	}
	key, err := tok.UnwrapCEK(ctx, x.l.KeyURI, mine.EncryptedKey, h)
	if err != nil {
		return fmt.Errorf("failed to unwrap the content key with the key of list %q: %w", x.l.Address, err)
	}
	x.took(key, env)
	return nil
}

// unwrapAgreed is unwrap for an EC list key: the post's KeyAgreeRecipientInfo for the list's
// certificate, agreed and unwrapped on the token.
func (x *expansion) unwrapAgreed(ctx context.Context, tok ListToken, env *cms.Enveloped) error {
	ktok, ok := tok.(KeyAgreeToken)
	if !ok {
		// Set refuses this; kept for a token swapped under a running agent.
		return fmt.Errorf("list %q: the token cannot unwrap for an EC list key", x.l.Address)
	}
	var ka *cms.KeyAgreement
	for _, ri := range env.RecipientInfos {
		if ri.Kind != cms.KeyAgree {
			continue
		}
		k, err := ri.KeyAgreement(x.l.Chain[0])
		if errors.Is(err, cms.ErrNotRecipient) {
			continue
		}
		if err != nil {
			// The post's own entry for the list cannot be used: the sender's fault, for good.
			return fmt.Errorf("failed to expand: %w: %w", ErrWrappedKey, err)
		}
		ka = k
		break
	}
	if ka == nil {
		return fmt.Errorf("failed to expand: %w", ErrNotForList)
	}
	key, err := ktok.UnwrapAgreedCEK(ctx, x.l.KeyURI, ka)
	if err != nil {
		return fmt.Errorf("failed to unwrap the content key with the key of list %q: %w", x.l.Address, err)
	}
	x.took(key, env)
	return nil
}

// took keeps the unwrapped content key of an encrypted post and the post's envelope.
func (x *expansion) took(key cms.ContentKey, env *cms.Enveloped) {
	x.key, x.enveloped = key, env
	x.smimeType = smime.TypeEnvelopedData
	if env.Auth() {
		// Whoever reads AuthEnvelopedData reads OAEP too (README, Profiles).
		x.smimeType, x.oaep = smime.TypeAuthEnvelopedData, x.a.opts.Token.OAEPHash()
	}
}

// encrypt signs a plain post with the list key and encrypts it once for every member.
func (x *expansion) encrypt(ctx context.Context, entity []byte) error {
	name := x.a.opts.Policy.Profile
	if name == "" {
		name = split.ProfileCompat
	}
	lc, err := x.a.opts.Sealer.ListContent(ctx, entity, name, x.sender(), x.now)
	if lc != nil {
		x.key = lc.Key
	}
	if err != nil {
		return fmt.Errorf("list %q: %w", x.l.Address, err)
	}
	x.ec, x.smimeType, x.oaep = lc.Content, lc.SMIMEType, lc.OAEP
	return nil
}

func (x *expansion) sender() seal.Sender { return seal.Sender{Signer: x.signer, Chain: x.l.Chain} }

// fanOut prepares every member's package on listParallel workers and returns them in member
// order, with the count of members skipped by reason. A member whose certificate cannot be
// used is skipped with a log line, never sent plaintext.
func (x *expansion) fanOut(ctx context.Context, log *slog.Logger) (*queue.Sealed, map[string]int, error) {
	members := x.l.members
	pkgs := make([]*smime.ListPackage, len(members))
	var (
		mu       sync.Mutex
		firstErr error
		skipped  = map[string]int{}
		wg       sync.WaitGroup
		next     atomic.Int64
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The members' token calls hold their Ps while they block in C; more Ps keep the cores on
	// the other members' Go work meanwhile (procs). Not for a list the workers take in one
	// round: changing the Ps stops the world twice.
	if len(members) > listParallel {
		defer procs.Widen()()
	}
	for range min(listParallel, len(members)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(members) {
					return
				}
				pk, err := x.member(ctx, members[i], log)
				mu.Lock()
				switch {
				case err == nil && pk != nil:
					pkgs[i] = pk
				case err == nil:
					skipped[SkipNoCertificate]++
				case errors.Is(err, cms.ErrUnsupported), errors.Is(err, cms.ErrNoSubjectKeyID):
					skipped[SkipUnusableCertificate]++
					log.Warn("list member skipped", "member", members[i], "err", err)
				case firstErr == nil:
					firstErr = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	out := &queue.Sealed{Packages: make([]queue.Package, 0, len(members)-skipped[SkipNoCertificate]-skipped[SkipUnusableCertificate])}
	for _, pk := range pkgs {
		if pk == nil {
			continue
		}
		out.Packages = append(out.Packages, queue.Package{
			// The list's own address as the envelope sender would send a bounce back into the list;
			// the poster must not learn members from bounces either. So bounces go nowhere.
			MailFrom: "",
			RcptTo:   []string{pk.Recipient},
			Body:     pk,
			Mode:     seal.ModeEncrypted,
			Profile:  seal.ProfileOf(x.smimeType),
		})
	}
	return out, skipped, nil
}

// choose applies the cert_choice policy to a member's valid certificates (newest first).
func (x *expansion) choose(valid []*directory.Entry) []*x509.Certificate {
	if len(valid) == 0 {
		return nil
	}
	if x.a.opts.Policy.CertChoice == split.Newest {
		valid = valid[:1]
	}
	out := make([]*x509.Certificate, len(valid))
	for i, e := range valid {
		out[i] = e.Cert
	}
	return out
}

// member wraps the content key for one member, assembles their envelope and signs it as the
// list. A member without a valid certificate gets nil and a log line naming only their own
// certificates.
func (x *expansion) member(ctx context.Context, addr string, log *slog.Logger) (*smime.ListPackage, error) {
	valid, rejected, err := x.a.opts.Directory.LookupContext(ctx, addr)
	if err != nil {
		// Skipping the member now would be for good: wait until the directory answers.
		return nil, retry.Temporary(fmt.Errorf("failed to look up certificates of list member %q: %w", addr, err))
	}
	certs := x.choose(valid)
	if len(certs) == 0 {
		errs := make([]string, 0, len(rejected))
		for _, r := range rejected {
			errs = append(errs, r.Err.Error())
		}
		log.Warn("list member skipped: no valid certificate", "member", addr, "rejected", errs)
		return nil, nil
	}
	ris, err := x.a.opts.Sealer.WrapMember(ctx, x.key, addr, certs, x.oaep)
	if err != nil {
		return nil, fmt.Errorf("failed to wrap the content key for list member %q: %w", addr, err)
	}
	var der *cms.Encoded
	if x.enveloped != nil {
		der, err = x.enveloped.WithRecipients(ris)
	} else {
		der, err = cms.Envelope(x.ec, ris)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to assemble the envelope of list member %q: %w", addr, err)
	}
	// From here on the member is its envelope's head: the RecipientInfos and the Encoded are
	// garbage as soon as this returns.
	own, err := x.shared.Envelope(der)
	if err != nil {
		return nil, fmt.Errorf("list member %q: %w", addr, err)
	}
	digest, err := x.shared.Digest(own)
	if err != nil {
		return nil, fmt.Errorf("failed to hash the envelope of list member %q: %w", addr, err)
	}
	sig, err := x.sign.Sign(digest)
	if err != nil {
		return nil, fmt.Errorf("failed to sign as list %q: %w", x.l.Address, err)
	}
	pk := x.shared.Package(addr, own, sig)
	pk.SetRecipientInfos(ris)
	return pk, nil
}
