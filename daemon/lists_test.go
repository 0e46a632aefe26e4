package daemon

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"appliance/cms"
	"appliance/config"
	"appliance/directory"
	"appliance/internal/softhsmtest"
	"appliance/lists"
	"appliance/pipeline"
	"appliance/smtpfront"
)

// noToken is never asked anything: these tests stop before any HSM work.
type noToken struct{}

func (noToken) Signer(context.Context, string) (crypto.Signer, error) {
	return nil, errors.New("no token")
}
func (noToken) NewContentKey(context.Context) (cms.ContentKey, error) {
	return nil, errors.New("no token")
}
func (noToken) OAEPHash() crypto.Hash { return crypto.SHA1 }
func (noToken) UnwrapCEK(context.Context, string, []byte, crypto.Hash) (cms.ContentKey, error) {
	return nil, errors.New("no token")
}

func TestListsFromConfig(t *testing.T) {
	env := softhsmtest.Setup(t)
	list := func(p config.Posters) *config.Config {
		return &config.Config{Lists: []config.List{{Address: "list@example.test", Key: "pkcs11:object=list",
			Cert: env.File("list.chain.pem"), MembersFile: "/m", Posters: p}}}
	}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		want lists.Posters
		err  bool
	}{
		{"ok members", list(config.Posters{Kind: config.PostersMembers}), lists.Posters{Members: true}, false},
		{"ok anyone", list(config.Posters{Kind: config.PostersAnyone}), lists.Posters{Anyone: true}, false},
		{"ok addresses", list(config.Posters{Addresses: []string{"boss@example.org"}}), lists.Posters{Addresses: []string{"boss@example.org"}}, false},
		{"fail missing certificate", func() *config.Config {
			c := list(config.Posters{Kind: config.PostersMembers})
			c.Lists[0].Cert = filepath.Join(t.TempDir(), "none.pem")
			return c
		}(), lists.Posters{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := listsFromConfig(tc.cfg)
			if tc.err {
				if err == nil {
					t.Fatal("listsFromConfig succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || len(got[0].Chain) != 2 || got[0].KeyURI != "pkcs11:object=list" || !reflect.DeepEqual(got[0].Posters, tc.want) {
				t.Fatalf("got %+v", got)
			}
		})
	}
}

func TestWithLists(t *testing.T) {
	env := softhsmtest.Setup(t)
	dir, err := directory.Open(directory.Options{CertsDir: env.File("certs"), RootsFile: env.File("roots.pem")})
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := pipeline.New(pipeline.Options{Directory: dir, Token: noToken{}})
	if err != nil {
		t.Fatal(err)
	}
	members := filepath.Join(t.TempDir(), "members")
	if err := os.WriteFile(members, []byte("bob@example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{Lists: []config.List{{Address: "list@example.test", Key: "pkcs11:object=list",
		Cert: env.File("list.chain.pem"), MembersFile: members, Posters: config.Posters{Kind: config.PostersMembers}}}}
	p := &Parts{cfg: cfg, Pipe: pipe}
	if err := setupLists(p, nil); err == nil {
		t.Fatal("setupLists without a token succeeded")
	}
	ls, err := listsFromConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := pipe.SetLists(ls, noToken{}); err != nil {
		t.Fatal(err)
	}
	front := frontPolicy{pipe}

	t.Run("ok no lists keeps the policy", func(t *testing.T) {
		if _, ok := withLists(&config.Config{}, pipe, front).(smtpfront.ListPolicy); ok {
			t.Fatal("without lists the front end must not defer sender checks")
		}
	})
	t.Run("ok lists add the posting rules", func(t *testing.T) {
		lp, ok := withLists(cfg, pipe, front).(smtpfront.ListPolicy)
		if !ok {
			t.Fatal("not a ListPolicy")
		}
		if !lp.IsList("list@example.test") || lp.IsList("bob@example.test") {
			t.Fatal("IsList is wrong")
		}
		if err := lp.CheckPoster(context.Background(), "list@example.test", "bob@example.test"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("fail outsider gets a policy refusal naming only the list", func(t *testing.T) {
		lp := withLists(cfg, pipe, front).(smtpfront.ListPolicy)
		err := lp.CheckPoster(context.Background(), "list@example.test", "mallory@example.org")
		var pe *smtpfront.PolicyError
		if !errors.As(err, &pe) || !errors.Is(err, lists.ErrNotPoster) || pe.Text != "not allowed to post to <list@example.test>" {
			t.Fatalf("CheckPoster = %v", err)
		}
	})
}
