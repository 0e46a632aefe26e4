package hsm_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"appliance/hsm"
	"appliance/internal/ci"
	"appliance/internal/softhsmtest"

	"github.com/miekg/pkcs11"
)

// A token is chosen by the token attributes of a PKCS#11 URI: its label, or its serial alone, and
// every further attribute given must match.
func TestSelectToken(t *testing.T) {
	tok, env := open(t, nil)
	info, err := tok.Info()
	if err != nil {
		t.Fatal(err)
	}
	if info.Label != softhsmtest.TokenLabel || info.Serial == "" || info.Manufacturer == "" {
		t.Fatalf("Info = %+v", info)
	}
	tests := []struct {
		name string
		uri  string
		want error
	}{
		{"ok label", "pkcs11:token=appliance", nil},
		{"ok serial alone", "pkcs11:serial=" + info.Serial, nil},
		{"ok label and manufacturer", "pkcs11:token=appliance;manufacturer=" + escapeURI(info.Manufacturer), nil},
		{"ok label serial model", "pkcs11:token=appliance;serial=" + info.Serial + ";model=" + escapeURI(info.Model), nil},
		{"fail other manufacturer", "pkcs11:token=appliance;manufacturer=Acme", hsm.ErrTokenNotFound},
		{"fail other serial", "pkcs11:token=appliance;serial=0000", hsm.ErrTokenNotFound},
		{"fail unknown serial", "pkcs11:serial=0000", hsm.ErrTokenNotFound},
		{"fail neither label nor serial", "pkcs11:manufacturer=" + escapeURI(info.Manufacturer), hsm.ErrInvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := hsm.ParseURI(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			cfg := config(env)
			cfg.TokenLabel, cfg.Select, cfg.Name = "", u, "main"
			tok, err := hsm.Open(cfg)
			if tc.want != nil {
				if err == nil {
					tok.Close()
					t.Fatalf("Open(%s) succeeded", tc.uri)
				}
				if !errors.Is(err, tc.want) {
					t.Fatalf("error %q is not %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open(%s): %v", tc.uri, err)
			}
			defer tok.Close()
			if _, err := tok.Signer(context.Background(), "pkcs11:object=alice"); err != nil {
				t.Fatalf("Signer: %v", err)
			}
		})
	}
}

// Several tokens of one module (an HSM's partitions, SoftHSM2's tokens in one directory) are
// several Tokens: one of them reconnecting, closing and opening again leaves the module, and
// with it the others' sessions and keys, alone.
func TestTokensShareModule(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t)
	label := fmt.Sprintf("second-%d", time.Now().UnixNano())
	for _, args := range [][]string{
		{"--init-token", "--free", "--label", label, "--so-pin", softhsmtest.SOPIN, "--pin", softhsmtest.PIN},
		{"--import", env.File("alice.key"), "--token", label, "--label", "alice", "--id", "01", "--pin", softhsmtest.PIN},
	} {
		if out, err := exec.Command("softhsm2-util", args...).CombinedOutput(); err != nil {
			t.Fatalf("softhsm2-util %v: %v\n%s", args, err, out)
		}
	}
	first, _ := open(t, nil)
	cfg := config(env)
	cfg.TokenLabel = label
	second, err := hsm.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { second.Close() }()
	ctx := context.Background()
	digest := sha256.Sum256([]byte("one module"))
	bob := env.Cert(t, "bob").PublicKey.(*rsa.PublicKey)
	use := func(tok *hsm.Token) error {
		s, err := tok.Signer(ctx, "pkcs11:object=alice")
		if err != nil {
			return err
		}
		if _, err := s.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
			return err
		}
		k, err := tok.GenerateCEK(ctx)
		if err != nil {
			return err
		}
		defer k.Destroy(ctx)
		_, err = k.WrapRSA(ctx, bob, 0)
		return err
	}
	if err := use(second); err != nil {
		t.Fatalf("the second token: %v", err)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		defer func() { done <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := use(first); err != nil {
				t.Errorf("the first token while the second reconnected and closed: %v", err)
				return
			}
			n++
		}
	}()
	for range 3 {
		if err := second.Reconnect(); err != nil {
			t.Fatalf("Reconnect: %v", err)
		}
		if err := use(second); err != nil {
			t.Fatalf("the second token after Reconnect: %v", err)
		}
	}
	second.Close()
	if second, err = hsm.Open(cfg); err != nil {
		t.Fatalf("open the second token again: %v", err)
	}
	if err := use(second); err != nil {
		t.Fatalf("the second token opened again: %v", err)
	}
	close(stop)
	if n := <-done; n == 0 {
		t.Error("the first token made no operation meanwhile")
	}
	// And the other way round: the first closing leaves the second working.
	first.Close()
	if err := use(second); err != nil {
		t.Fatalf("the second token after the first closed: %v", err)
	}
}

func escapeURI(s string) string { return (&hsm.URI{Object: s}).String()[len("pkcs11:object="):] }

// The full token lists what both roles need, and Mechanisms says so.
func TestMechanisms(t *testing.T) {
	tok, env := open(t, nil)
	if ock(env) {
		t.Skip("opencryptoki's list differs (no AES-GCM, no EC): TestSecondImplementation checks it")
	}
	ms, err := tok.Mechanisms()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]hsm.Mechanism{}
	for _, m := range ms {
		have[m.Name] = m
	}
	for _, name := range []string{"CKM_AES_KEY_GEN", "CKM_AES_CBC_PAD", "CKM_AES_GCM", "CKM_RSA_PKCS", "CKM_ECDSA", "CKM_RSA_PKCS_PSS"} {
		if _, ok := have[name]; !ok {
			t.Errorf("%s missing from %d mechanisms", name, len(ms))
		}
	}
	if m := have["CKM_AES_KEY_GEN"]; !m.ForContent || m.ForSign || !strings.Contains(strings.Join(m.UsedFor, ","), "generate") {
		t.Errorf("CKM_AES_KEY_GEN = %+v", m)
	}
	if m := have["CKM_ECDSA"]; !m.ForSign || !strings.Contains(strings.Join(m.UsedFor, ","), "sign") {
		t.Errorf("CKM_ECDSA = %+v", m)
	}
	if !tok.HasMechanism(pkcs11.CKM_AES_GCM) || tok.Roles() != hsm.AllRoles {
		t.Errorf("HasMechanism(CKM_AES_GCM) = %v, Roles = %v", tok.HasMechanism(pkcs11.CKM_AES_GCM), tok.Roles())
	}
}

// cardMechanisms is a sign-only card's set: RSA PKCS#1 v1.5 signing and key generation, no AES,
// no PSS, no EC.
const cardMechanisms = "CKM_RSA_PKCS,CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS"

// A card that can only sign is opened for role sign, refused for role content with the token and
// the mechanism named, and refuses what it cannot do per key. SoftHSM2 reads its configuration
// once per process, so the card is used from a child process running TestCardChild.
func TestCardRoles(t *testing.T) {
	env := softhsmtest.Setup(t)
	env.RequireSoftHSM(t) // the card is a SoftHSM2 token with its own softhsm2.conf
	conf := env.Card(t, "card", cardMechanisms)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCardChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf, "APPLIANCE_CARD_CHILD="+env.Module)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestCardChild") {
		t.Fatalf("card child: %v\n%s", err, out)
	}
}

func TestCardChild(t *testing.T) {
	module := os.Getenv("APPLIANCE_CARD_CHILD")
	if module == "" {
		t.Skip("run by TestCardRoles")
	}
	base := hsm.Config{Module: module, TokenLabel: "card", Name: "card", PIN: softhsmtest.PIN, MaxSessions: 2, PoolTimeout: 5 * time.Second}

	for _, roles := range []hsm.Roles{hsm.RoleContent, hsm.AllRoles, 0} {
		cfg := base
		cfg.Roles = roles
		tok, err := hsm.Open(cfg)
		if err == nil {
			tok.Close()
			t.Fatalf("Open for roles %q succeeded on a sign-only card", roles)
		}
		var me *hsm.MechanismError
		if !errors.Is(err, hsm.ErrMechanism) || !errors.As(err, &me) || hsm.IsTemporary(err) {
			t.Fatalf("roles %q: error %q is not a permanent ErrMechanism", roles, err)
		}
		if want := `token "card" has no CKM_AES_KEY_GEN, needed for role content`; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	cfg := base
	cfg.Roles = hsm.RoleSign
	tok, err := hsm.Open(cfg)
	if err != nil {
		t.Fatalf("Open for role sign: %v", err)
	}
	defer tok.Close()
	ctx := context.Background()
	if tok.HasMechanism(pkcs11.CKM_AES_KEY_GEN) || !tok.HasMechanism(pkcs11.CKM_RSA_PKCS) {
		t.Errorf("card mechanisms: AES %v, RSA %v", tok.HasMechanism(pkcs11.CKM_AES_KEY_GEN), tok.HasMechanism(pkcs11.CKM_RSA_PKCS))
	}
	if _, err := tok.GenerateCEK(ctx); !errors.Is(err, hsm.ErrInvalidArgument) || !strings.Contains(err.Error(), "role content") {
		t.Errorf("GenerateCEK on a sign-only token: %v", err)
	}
	// SoftHSM2 filters the list it reports, not key generation: an EC key can still be made.
	// Signing with it is what the card cannot do, and Signer says so before any message tries.
	if _, err := tok.GenerateKeyPair(ctx, "ec", hsm.P256); err == nil {
		_, err := tok.Signer(ctx, "pkcs11:object=ec")
		if want := `token "card" has no CKM_ECDSA, needed for key "pkcs11:object=ec"`; !errors.Is(err, hsm.ErrMechanism) || !strings.Contains(err.Error(), want) {
			t.Errorf("Signer for an EC key on a card without CKM_ECDSA: %v, want %q", err, want)
		}
	}
	if _, err := tok.GenerateKeyPair(ctx, "alice", hsm.RSA2048); err != nil {
		t.Fatalf("GenerateKeyPair: %v", err)
	}
	s, err := tok.Signer(ctx, "pkcs11:token=card;object=alice")
	if err != nil {
		t.Fatalf("Signer: %v", err)
	}
	digest := sha256.Sum256([]byte("card"))
	sig, err := s.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	if err := rsa.VerifyPKCS1v15(s.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("verify: %v", err)
	}
	_, err = s.Sign(rand.Reader, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	if want := `token "card" has no CKM_RSA_PKCS_PSS, needed for key "pkcs11:token=card;object=alice"`; !errors.Is(err, hsm.ErrMechanism) || !strings.Contains(err.Error(), want) {
		t.Errorf("PSS on a card without CKM_RSA_PKCS_PSS: %v, want %q", err, want)
	}
}

// pkcs11Tool runs OpenSC's pkcs11-tool on the test token, logged in.
func pkcs11Tool(t *testing.T, env *softhsmtest.Env, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("pkcs11-tool"); err != nil {
		if ci.On() {
			t.Fatal("pkcs11-tool (opensc) is missing (CI is set: a failure, not a skip)")
		}
		t.Skip("pkcs11-tool (opensc) is missing")
	}
	out, err := exec.Command("pkcs11-tool", append([]string{"--module", env.Module, "--token-label", softhsmtest.TokenLabel,
		"--login", "--pin", softhsmtest.PIN}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("pkcs11-tool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Keys marked CKA_ALWAYS_AUTHENTICATE, as a smartcard's signature key is, need the PIN again
// before each signature (a context-specific login); the Signer does that, for RSA PKCS#1 v1.5,
// RSA-PSS and ECDSA. SoftHSM2 refuses C_Sign without it (CKR_USER_NOT_LOGGED_IN).
func TestAlwaysAuthenticate(t *testing.T) {
	tok, env := open(t, nil)
	ctx := context.Background()
	rsaLabel, ecLabel := unique("always-rsa"), unique("always-ec")
	pkcs11Tool(t, env, "--keypairgen", "--key-type", "rsa:2048", "--label", rsaLabel, "--id", fmt.Sprintf("%x", randBytes(8)), "--always-auth", "--usage-sign")
	wantKeys := 2
	if ock(env) {
		wantKeys = 1 // no EC there
	} else {
		pkcs11Tool(t, env, "--keypairgen", "--key-type", "EC:prime256v1", "--label", ecLabel, "--id", fmt.Sprintf("%x", randBytes(8)), "--always-auth", "--usage-sign")
	}
	if objs := pkcs11Tool(t, env, "--list-objects", "--type", "privkey"); strings.Count(objs, "always authenticate") < wantKeys {
		t.Fatalf("pkcs11-tool does not show %d always-authenticate keys:\n%s", wantKeys, objs)
	}
	tests := []struct {
		name, label string
		opts        crypto.SignerOpts
	}{
		{"ok rsa pkcs1v15 sha256", rsaLabel, crypto.SHA256},
		{"ok rsa pkcs1v15 sha512", rsaLabel, crypto.SHA512},
		{"ok rsa pss", rsaLabel, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}},
		{"ok ecdsa p256", ecLabel, crypto.SHA256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.label == ecLabel {
				needEC(t, env)
			}
			s, err := tok.Signer(ctx, "pkcs11:object="+tc.label)
			if err != nil {
				t.Fatalf("Signer: %v", err)
			}
			if ock(env) {
				// opencryptoki 3.8.1 has no context-specific login: C_Login(CKU_CONTEXT_SPECIFIC)
				// gives CKR_USER_TYPE_INVALID, so such a key cannot sign there, and says so.
				_, err := s.Sign(rand.Reader, make([]byte, tc.opts.HashFunc().Size()), tc.opts)
				if err == nil || !strings.Contains(err.Error(), "CKR_USER_TYPE_INVALID") {
					t.Fatalf("Sign on opencryptoki: %v, want CKR_USER_TYPE_INVALID", err)
				}
				return
			}
			for i := 0; i < 3; i++ { // the PIN is needed again each time
				h := tc.opts.HashFunc().New()
				fmt.Fprintf(h, "message %d", i)
				digest := h.Sum(nil)
				sig, err := s.Sign(rand.Reader, digest, tc.opts)
				if err != nil {
					t.Fatalf("Sign %d: %v", i, err)
				}
				if err := verify(s.Public(), digest, sig, tc.opts); err != nil {
					t.Fatalf("verify %d: %v", i, err)
				}
			}
		})
	}
}

// NewSupervisor refuses what cannot work before starting anything, and one token with every role
// signs and makes content keys through it.
func TestNewSupervisor(t *testing.T) {
	env := softhsmtest.Setup(t)
	one := []hsm.TokenSpec{{Config: config(env), Keys: []string{"pkcs11:object=alice"}}}
	tests := []struct {
		name string
		opts hsm.SupervisorOptions
	}{
		{"fail no tokens", hsm.SupervisorOptions{}},
		{"fail unknown standby", hsm.SupervisorOptions{Tokens: []hsm.TokenSpec{{Config: config(env), Standby: "spare"}}}},
		{"fail unknown content token", hsm.SupervisorOptions{Tokens: one, Content: "spare"}},
		{"fail unknown fallback", hsm.SupervisorOptions{Tokens: one, Fallback: "spare"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := hsm.NewSupervisor(tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("NewSupervisor succeeded")
			}
			if !errors.Is(err, hsm.ErrInvalidArgument) || !hsm.FatalAtStart(err) {
				t.Errorf("error %v is not a fatal ErrInvalidArgument", err)
			}
		})
	}
	s, err := hsm.NewSupervisor(hsm.SupervisorOptions{Tokens: one, Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Healthy(); err != nil {
		t.Fatal(err)
	}
	signer, err := s.Signer(context.Background(), "pkcs11:object=alice")
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("supervised"))
	sig, err := signer.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := verify(signer.Public(), digest[:], sig, crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	k, err := s.ContentKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s.Active(softhsmtest.TokenLabel) != softhsmtest.TokenLabel || s.OAEPHash() != wantOAEP(env) {
		t.Errorf("Active %q, OAEPHash %v", s.Active(softhsmtest.TokenLabel), s.OAEPHash())
	}
}
