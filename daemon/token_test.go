package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"appliance/config"
	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/interop"
	"appliance/internal/lockedbuf"
	"appliance/internal/softhsmtest"
	"appliance/internal/testconfig"
	"appliance/lists"
	"appliance/metrics"
	"appliance/queue"
	"appliance/smime"

	"github.com/miekg/pkcs11"
)

func TestFatalAtStart(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		fatal bool
	}{
		{name: "ok token missing waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrTokenNotFound}},
		{name: "ok token gone waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrTokenGone}},
		{name: "ok module not initialisable waits", err: &hsm.Error{Op: "open", Kind: hsm.ErrModule, Err: errors.New("CKR_GENERAL_ERROR")}},
		{name: "fail module file missing", err: &hsm.Error{Op: "open", Kind: hsm.ErrModule, Err: &fs.PathError{Op: "stat", Path: "/x.so", Err: fs.ErrNotExist}}, fatal: true},
		{name: "fail wrong PIN", err: &hsm.Error{Op: "open", Kind: hsm.ErrPINIncorrect}, fatal: true},
		{name: "fail bad setting", err: &hsm.Error{Op: "open", Kind: hsm.ErrInvalidArgument}, fatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hsm.FatalAtStart(tt.err); got != tt.fatal {
				t.Errorf("hsm.FatalAtStart(%v) = %v, want %v", tt.err, got, tt.fatal)
			}
		})
	}
}

// lockedLog collects the supervisor's log lines.
type lockedLog struct{ lockedbuf.Buffer }

func (l *lockedLog) count(msg string) int {
	return strings.Count(l.String(), "msg=\""+msg+"\"")
}

// moveToken takes the test binary's token directory away and returns the function that puts it
// back (also run at cleanup).
func moveToken(t *testing.T, env *softhsmtest.Env) func() {
	t.Helper()
	away := env.TokenDir + ".away"
	if err := os.Rename(env.TokenDir, away); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	restore := func() {
		once.Do(func() {
			if err := os.Rename(away, env.TokenDir); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Cleanup(restore)
	return restore
}

func startSupervisor(t *testing.T, env *softhsmtest.Env, log *lockedLog, onUp func()) *Tokens {
	t.Helper()
	cfg := hsm.Config{Module: env.Module, TokenLabel: softhsmtest.TokenLabel, PIN: softhsmtest.PIN, MaxSessions: 2, PoolTimeout: 5 * time.Second}
	s, err := hsm.NewSupervisor(hsm.SupervisorOptions{
		Tokens:  []hsm.TokenSpec{{Config: cfg}},
		MinWait: 20 * time.Millisecond, MaxWait: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(log, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if onUp != nil {
		s.SetOnUp(onUp)
	}
	t.Cleanup(func() { s.Close() })
	return &Tokens{s}
}

func waitHealthy(t *testing.T, s *Tokens) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still down 10s after the token came back: %v", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sign(s *Tokens) error {
	ctx := context.Background()
	signer, err := s.Signer(ctx, "pkcs11:object=alice")
	if err != nil {
		return err
	}
	d := sha256.Sum256([]byte("x"))
	_, err = signer.Sign(rand.Reader, d[:], crypto.SHA256)
	return err
}

// The token goes away under a running supervisor and comes back: one "hsm down", fast temporary
// failures meanwhile, reconnection, one "hsm up" and the OnUp call.
func TestSupervisorOutage(t *testing.T) {
	env := softhsmtest.Setup(t)
	log := &lockedLog{}
	var ups atomic.Int32
	s := startSupervisor(t, env, log, func() { ups.Add(1) })
	if err := s.Healthy(); err != nil {
		t.Fatalf("Healthy at start: %v", err)
	}
	if err := sign(s); err != nil {
		t.Fatalf("sign: %v", err)
	}
	key, err := s.NewContentKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}

	restore := moveToken(t, env)
	err = sign(s)
	if !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("sign with the token gone: %v, want ErrTokenGone", err)
	}
	herr := s.Healthy()
	if !errors.Is(herr, hsm.ErrUnavailable) || !hsm.IsTemporary(herr) {
		t.Fatalf("Healthy with the token gone: %v, want a temporary hsm.ErrUnavailable", herr)
	}
	// While down, work fails at once and says so, without going near the token.
	for i := range 3 {
		if _, err := s.NewContentKey(context.Background()); !errors.Is(err, hsm.ErrUnavailable) || !hsm.IsTemporary(err) {
			t.Fatalf("NewContentKey %d while down: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // several failed reconnects
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign after recovery: %v", err)
	}
	// A key from before the loss fails, but that is old news: the token stays up.
	var buf bytes.Buffer
	if err := key.EncryptCBC(context.Background(), make([]byte, 16), strings.NewReader("x"), &buf); !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("key from before the reconnect: %v, want ErrTokenGone", err)
	}
	if err := s.Healthy(); err != nil {
		t.Fatalf("a stale key's failure took the token down: %v", err)
	}
	if down, up := log.count("hsm down"), log.count("hsm up"); down != 1 || up != 1 {
		t.Errorf("%d \"hsm down\" and %d \"hsm up\" lines, want 1 each", down, up)
	}
	if n := ups.Load(); n != 1 {
		t.Errorf("OnUp called %d times, want 1", n)
	}
}

// Without its token at start the supervisor starts down, with SHA-1 assumed for OAEP, and comes
// up when the token appears.
func TestSupervisorMissingAtStart(t *testing.T) {
	env := softhsmtest.Setup(t)
	restore := moveToken(t, env)
	log := &lockedLog{}
	s := startSupervisor(t, env, log, nil)
	if err := s.Healthy(); !errors.Is(err, hsm.ErrUnavailable) {
		t.Fatalf("Healthy without a token: %v", err)
	}
	if _, err := s.Signer(context.Background(), "pkcs11:object=alice"); !errors.Is(err, hsm.ErrUnavailable) || !hsm.IsTemporary(err) {
		t.Fatalf("Signer without a token: %v", err)
	}
	if h := s.OAEPHash(); h != crypto.SHA1 {
		t.Errorf("OAEPHash before the token was seen: %v, want SHA-1", h)
	}
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign once the token appeared: %v", err)
	}
	if log.count("hsm down") != 1 || log.count("hsm up") != 1 {
		t.Errorf("log:\n%s", log.String())
	}
}

// A different token under the same label, whose PIN is not ours, keeps the supervisor down and
// says why; putting the right token back brings it up.
func TestSupervisorWrongPINAfterTokenChange(t *testing.T) {
	env := softhsmtest.Setup(t)
	log := &lockedLog{}
	s := startSupervisor(t, env, log, nil)
	restore := moveToken(t, env)

	// The replacement: same label, another PIN, in the directory the module reads.
	if err := os.Mkdir(env.TokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "softhsm2.conf")
	if err := os.WriteFile(conf, []byte("directories.tokendir = "+env.TokenDir+"\nobjectstore.backend = file\nlog.level = ERROR\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", softhsmtest.TokenLabel, "--so-pin", "5678", "--pin", "987654")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v: %s", err, out)
	}

	if err := sign(s); !errors.Is(err, hsm.ErrTokenGone) {
		t.Fatalf("sign after the token changed: %v, want ErrTokenGone", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !errors.Is(s.Healthy(), hsm.ErrPINIncorrect) {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy with a token that refuses the PIN: %v, want ErrPINIncorrect", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !hsm.IsTemporary(s.Healthy()) {
		t.Errorf("a refused PIN at run time must defer work, not fail it: %v", s.Healthy())
	}
	// The state changes before its log line is written: give the line a moment.
	for log.count("hsm still down") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no \"hsm still down\" line naming the new cause")
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := os.RemoveAll(env.TokenDir); err != nil {
		t.Fatal(err)
	}
	restore()
	waitHealthy(t, s)
	if err := sign(s); err != nil {
		t.Fatalf("sign with the right token back: %v", err)
	}
}

// A wrapped key the token refuses is the message's fault: lists.ErrWrappedKey, and the token
// stays up.
func TestSupervisorUnwrap(t *testing.T) {
	env := softhsmtest.Setup(t)
	s := startSupervisor(t, env, &lockedLog{}, nil)
	garbage := make([]byte, 256)
	rand.Read(garbage)
	tests := []struct {
		name    string
		wrapped []byte
		oaep    crypto.Hash
	}{
		{name: "fail garbage", wrapped: garbage},
		{name: "fail empty", wrapped: nil},
		{name: "fail garbage with OAEP", wrapped: garbage, oaep: crypto.SHA1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.UnwrapCEK(context.Background(), "pkcs11:object=list", tt.wrapped, tt.oaep)
			if !errors.Is(err, lists.ErrWrappedKey) {
				t.Fatalf("UnwrapCEK: %v, want ErrWrappedKey", err)
			}
			if err := s.Healthy(); err != nil {
				t.Fatalf("a bad wrapped key took the token down: %v", err)
			}
		})
	}
}

func startCard(t *testing.T, env *softhsmtest.Env) *softhsmtest.Remote {
	return softhsmtest.StartCard(t, env)
}

// twoTokenConfig is the full test token with every role beside the card with role sign.
func twoTokenConfig(env *softhsmtest.Env, card *softhsmtest.Remote, cardRoles ...string) *config.Config {
	return &config.Config{
		HSM: config.HSM{MaxSessions: 4, HSMHealth: config.HSMHealth{ReconnectMax: 200 * time.Millisecond}},
		Tokens: []config.Token{
			{Name: "hsm", Module: env.Module, URI: "pkcs11:token=appliance", PINFile: env.PINFile, Roles: []string{"sign", "content"}},
			{Name: "card", Module: card.Module, URI: "pkcs11:token=card;manufacturer=SoftHSM%20project", PINFile: env.PINFile, Roles: cardRoles, MaxSessions: 2},
		},
		Senders: []config.Sender{
			{Address: "alice@example.test", Key: "pkcs11:token=appliance;object=alice"},
			{Address: "carol@example.test", Key: "pkcs11:token=card;object=carol"},
		},
	}
}

func signWith(s *Tokens, key string) error {
	signer, err := s.Signer(context.Background(), key)
	if err != nil {
		return err
	}
	d := sha256.Sum256([]byte("x"))
	sig, err := signer.Sign(rand.Reader, d[:], crypto.SHA256)
	if err != nil {
		return err
	}
	return rsa.VerifyPKCS1v15(signer.Public().(*rsa.PublicKey), crypto.SHA256, d[:], sig)
}

// Two tokens: each sender's key is used on the token its URI picks, content keys come from the
// token with role content, and a configuration asking the sign-only card for content keys is
// refused at start, naming the token and the mechanism. When the card goes away, only its
// sender's signing fails, temporarily (the queue defers that mail); when it is back it signs again
// without a restart.
func TestTokensCard(t *testing.T) {
	env := softhsmtest.Setup(t)
	card := startCard(t, env)

	_, err := newTokenSet(twoTokenConfig(env, card, "sign", "content"), nil, false)
	want := `token "card" has no CKM_AES_KEY_GEN, needed for role content`
	if err == nil || !errors.Is(err, hsm.ErrMechanism) || !strings.Contains(err.Error(), want) || !hsm.FatalAtStart(err) {
		t.Fatalf("start with a content role on the card: %v; want a fatal error saying %q", err, want)
	}

	log := &lockedLog{}
	set, err := newTokenSet(twoTokenConfig(env, card, "sign"), slog.New(slog.NewTextHandler(log, nil)), false)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer set.Close()
	const alice, carol = "pkcs11:token=appliance;object=alice", "pkcs11:token=card;object=carol"
	for _, k := range []string{alice, carol} {
		if err := signWith(set, k); err != nil {
			t.Fatalf("sign with %s: %v", k, err)
		}
	}
	if tok, err := set.Token("card"); err != nil || tok.HasMechanism(pkcs11.CKM_AES_KEY_GEN) {
		t.Fatalf("the card lists CKM_AES_KEY_GEN (%v), so the signing above proves nothing about routing", err)
	}
	key, err := set.NewContentKey(context.Background())
	if err != nil {
		t.Fatalf("content key: %v", err)
	}
	// A list's content key is unwrapped on the token of the list's key, and wrapped on from there.
	wrapped, err := key.WrapRSA(context.Background(), env.Cert(t, "list").PublicKey.(*rsa.PublicKey), 0)
	if err != nil {
		t.Fatal(err)
	}
	key.(*hsm.SupervisedKey).Destroy(context.Background())
	lk, err := set.UnwrapCEK(context.Background(), "pkcs11:token=appliance;object=list", wrapped, 0)
	if err != nil {
		t.Fatalf("unwrap for the list: %v", err)
	}
	if _, err := lk.WrapRSA(context.Background(), env.Cert(t, "bob").PublicKey.(*rsa.PublicKey), 0); err != nil {
		t.Fatalf("wrap the list's content key for a member: %v", err)
	}
	lk.(*hsm.SupervisedKey).Destroy(context.Background())

	card.Stop()
	err = signWith(set, carol)
	if err == nil || !hsm.IsTemporary(err) {
		t.Fatalf("sign on a removed card: %v, want a temporary error", err)
	}
	// Others are unaffected.
	if err := signWith(set, alice); err != nil {
		t.Fatalf("alice signs while the card is out: %v", err)
	}
	if err := set.Healthy(); err != nil {
		t.Errorf("Healthy while only the card is out: %v", err)
	}
	if _, err := set.NewContentKey(context.Background()); err != nil {
		t.Errorf("content key while only the card is out: %v", err)
	}

	card.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := signWith(set, carol)
		if err == nil {
			break
		}
		if !hsm.IsTemporary(err) {
			t.Fatalf("sign after the card came back: %v (not temporary)", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("carol still cannot sign 30s after the card came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := log.count("hsm down"); n != 1 {
		t.Errorf("%d \"hsm down\" lines, want 1:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), "token=card") {
		t.Errorf("the log does not name the card:\n%s", log.String())
	}
}

// A sender whose key on the token is ECDSA P-256 gets mail out that OpenSSL, gpgsm and NSS all
// verify: the token's ECDSA signature through the whole sealing pipeline.
func TestECSender(t *testing.T) {
	env := softhsmtest.Setup(t)
	t.Cleanup(interop.Cleanup)
	// frank's certificate is for a P-256 key; an operator loads such a key onto the token the way
	// mktoken.sh loads alice's.
	label := fmt.Sprintf("frank-%x", time.Now().UnixNano())
	if out, err := exec.Command("softhsm2-util", "--import", env.File("frank.key"), "--token", softhsmtest.TokenLabel,
		"--label", label, "--id", fmt.Sprintf("%x", time.Now().UnixNano()), "--pin", softhsmtest.PIN).CombinedOutput(); err != nil {
		t.Fatalf("import frank's key: %v\n%s", err, out)
	}
	dir := t.TempDir()
	c := testconfig.New(env, dir)
	c.Extra = fmt.Sprintf(`[[sender]]
address = "frank@example.test"
key = "pkcs11:token=appliance;object=%s"
cert = %q
`, label, env.File("frank.chain.pem"))
	cfg, err := config.Load(c.Write(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	p, err := OpenParts(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	signer, err := p.tokens.Signer(context.Background(), cfg.Senders[1].Key)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := signer.Public().(*ecdsa.PublicKey); !ok {
		t.Fatalf("frank's key on the token is %T, not ECDSA", signer.Public())
	}
	msg := "From: frank@example.test\r\nTo: bob@example.test\r\nSubject: ec\r\nMessage-ID: <ec@example.test>\r\n\r\nsigned on the token with P-256\r\n"
	sealed, err := p.Pipe.Process(context.Background(), "ec", queue.Envelope{MailFrom: "frank@example.test", RcptTo: []string{"bob@example.test"},
		Helo: "localhost", ReceivedAt: time.Now()}, strings.NewReader(msg))
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	if len(sealed.Packages) != 1 {
		t.Fatalf("%d packages, want 1", len(sealed.Packages))
	}
	var body bytes.Buffer
	if _, err := sealed.Packages[0].Body.WriteTo(&body); err != nil {
		t.Fatal(err)
	}
	signed, err := interop.OpenSSLDecrypt(t, env.PKI, "bob", body.Bytes())
	if err != nil {
		t.Fatalf("bob decrypts: %v", err)
	}
	for name, verify := range map[string]func(testing.TB, string, []byte) ([]byte, error){
		"openssl": interop.OpenSSLVerify, "gpgsm": interop.GpgsmVerify, "cmsutil": interop.CmsutilVerify,
	} {
		content, err := verify(t, env.PKI, signed)
		if err != nil {
			t.Errorf("%s rejects the ECDSA signature: %v", name, err)
		} else if !strings.Contains(string(content), "signed on the token with P-256") {
			t.Errorf("%s verified content without the text:\n%s", name, content)
		}
	}
	// The signature really is ECDSA: the SignerInfo's algorithm, as openssl prints it.
	ps, err := smime.ParseSigned(signed)
	if err != nil {
		t.Fatalf("the decrypted package is not multipart/signed: %v", err)
	}
	if out, err := interop.OpenSSLPrint(t, ps.Signature); err != nil || !strings.Contains(out, "ecdsa-with-SHA256") {
		t.Errorf("SignedData does not say ecdsa-with-SHA256 (%v):\n%s", err, out)
	}
}

// A card whose signature key needs the PIN before every signature (CKA_ALWAYS_AUTHENTICATE), on
// a link that can be held: while one of its signatures hangs, the other sender signs and content
// keys are made as if the card were not there; released, the card's signature completes.
func TestTokensSlowCard(t *testing.T) {
	env := softhsmtest.Setup(t)
	card := env.Serve(t, env.Card(t, "card", softhsmtest.CardMechanisms), "card")
	link := card.Link(t)
	t.Setenv("P11_KIT_SERVER_ADDRESS", link.Address)
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if ci.On() {
			t.Fatal("pkcs11-tool (opensc) is missing (CI is set: a failure, not a skip)")
		}
		t.Skip("pkcs11-tool (opensc) is missing")
	}
	if out, err := exec.Command("pkcs11-tool", "--module", card.Module, "--token-label", "card", "--login", "--pin", softhsmtest.PIN,
		"--keypairgen", "--key-type", "rsa:2048", "--label", "carol", "--id", "0c", "--always-auth", "--usage-sign").CombinedOutput(); err != nil {
		t.Fatalf("pkcs11-tool --keypairgen --always-auth on the card: %v\n%s", err, out)
	}
	set, err := newTokenSet(twoTokenConfig(env, card, "sign"), nil, false)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer set.Close()
	const alice, carol = "pkcs11:token=appliance;object=alice", "pkcs11:token=card;object=carol"
	if err := signWith(set, carol); err != nil {
		t.Fatalf("sign on the card: %v", err)
	}

	link.Hold()
	done := make(chan error, 1)
	go func() { done <- signWith(set, carol) }()
	for i := 0; i < 20; i++ {
		if err := signWith(set, alice); err != nil {
			t.Fatalf("alice signs while the card is busy: %v", err)
		}
		k, err := set.NewContentKey(context.Background())
		if err != nil {
			t.Fatalf("content key while the card is busy: %v", err)
		}
		k.(*hsm.SupervisedKey).Destroy(context.Background())
	}
	select {
	case err := <-done:
		t.Fatalf("the card signed (%v) while its link was held: the test proves nothing", err)
	default:
	}
	link.Release()
	if err := <-done; err != nil {
		t.Fatalf("the card's signature after the link was released: %v", err)
	}
}

// A card and a standby token holding the same key: when the card goes away, the signature asked
// of it is made on the standby (nothing fails), the log says so and the queue is told to retry
// what it deferred; when the card is back it is used again.
func TestTokensFailover(t *testing.T) {
	env := softhsmtest.Setup(t)
	conf := env.Card(t, "card", softhsmtest.CardMechanisms)
	imp := exec.Command("softhsm2-util", "--import", env.File("alice.key"), "--token", "card", "--label", "alice", "--id", "01", "--pin", softhsmtest.PIN)
	imp.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import alice's key on the card: %v\n%s", err, out)
	}
	card := env.Serve(t, conf, "card")
	t.Setenv("P11_KIT_SERVER_ADDRESS", card.Address)
	cfg := &config.Config{
		HSM: config.HSM{MaxSessions: 4, HSMHealth: config.HSMHealth{ReconnectMax: 200 * time.Millisecond}},
		Tokens: []config.Token{
			{Name: "card", Module: card.Module, URI: "pkcs11:token=card", PINFile: env.PINFile, Roles: []string{"sign"}, Standby: "hsm"},
			{Name: "hsm", Module: env.Module, URI: "pkcs11:token=appliance", PINFile: env.PINFile, Roles: []string{"sign", "content"}},
		},
		Senders: []config.Sender{{Address: "alice@example.test", Key: "pkcs11:token=card;object=alice"}},
	}
	log := &lockedLog{}
	set, err := newTokenSet(cfg, slog.New(slog.NewTextHandler(log, nil)), false)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer set.Close()
	var retries atomic.Int32
	set.SetOnUp(func() { retries.Add(1) })
	const alice = "pkcs11:token=card;object=alice"
	if err := signWith(set, alice); err != nil || set.Active("card") != "card" {
		t.Fatalf("sign on the card: %v, active %q", err, set.Active("card"))
	}
	signer, err := set.Signer(context.Background(), alice)
	if err != nil {
		t.Fatal(err)
	}

	card.Stop()
	d := sha256.Sum256([]byte("failover"))
	if _, err := signer.Sign(rand.Reader, d[:], crypto.SHA256); err != nil {
		t.Fatalf("sign with a Signer found before the card went away: %v; the standby should have made it", err)
	}
	if err := signWith(set, alice); err != nil {
		t.Fatalf("sign while the card is away: %v", err)
	}
	obs := metrics.NewObserver(metrics.ObserveOptions{})
	obs.Tokens(set.Supervisor)
	wantActive(t, obs.Metrics(), "card", 0)
	wantActive(t, obs.Metrics(), "hsm", 1)
	if set.Active("card") != "hsm" || log.count("token failover") != 1 || retries.Load() == 0 {
		t.Fatalf("after the card went away: active %q, %d failover lines, %d retries asked\n%s",
			set.Active("card"), log.count("token failover"), retries.Load(), log.String())
	}
	if err := set.Healthy(); err != nil {
		t.Errorf("Healthy with the standby up: %v", err)
	}

	card.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for set.TokenHealthy("card") != nil {
		if time.Now().After(deadline) {
			t.Fatalf("card still down 30s after it came back: %v", set.TokenHealthy("card"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := signWith(set, alice); err != nil || set.Active("card") != "card" {
		t.Fatalf("sign after the card came back: %v, active %q", err, set.Active("card"))
	}
	wantActive(t, obs.Metrics(), "card", 1)
	wantActive(t, obs.Metrics(), "hsm", 0)
	if n := log.count("token failback"); n != 1 {
		t.Errorf("%d failback lines, want 1\n%s", n, log.String())
	}
}
