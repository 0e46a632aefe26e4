package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const listBlock = `
[[list]]
address = "team@Example.TEST"
key = "pkcs11:token=appliance;object=team"
cert = "/etc/appliance/lists/team.pem"
members_file = "/etc/appliance/lists/team.members"
`

func TestParseLists(t *testing.T) {
	tests := []struct {
		name    string
		more    string
		want    []List
		wantErr error
		wantKey string
	}{
		{name: "ok default posters are the members", more: listBlock, want: []List{{
			Address: "team@example.test", Key: "pkcs11:token=appliance;object=team",
			Cert: "/etc/appliance/lists/team.pem", MembersFile: "/etc/appliance/lists/team.members",
			Posters: Posters{Kind: PostersMembers},
		}}},
		{name: "ok anyone", more: listBlock + `posters = "anyone"` + "\n", want: []List{{
			Address: "team@example.test", Key: "pkcs11:token=appliance;object=team",
			Cert: "/etc/appliance/lists/team.pem", MembersFile: "/etc/appliance/lists/team.members",
			Posters: Posters{Kind: PostersAnyone},
		}}},
		{name: "ok addresses", more: listBlock + `posters = ["boss@Example.ORG", "alice@example.test"]` + "\n", want: []List{{
			Address: "team@example.test", Key: "pkcs11:token=appliance;object=team",
			Cert: "/etc/appliance/lists/team.pem", MembersFile: "/etc/appliance/lists/team.members",
			Posters: Posters{Addresses: []string{"boss@example.org", "alice@example.test"}},
		}}},
		{name: "ok two lists", more: listBlock + strings.Replace(listBlock, "team@", "board@", 1)},
		{name: "fail unknown posters word", more: listBlock + `posters = "everyone"` + "\n", wantErr: ErrInvalid, wantKey: "list[0].posters"},
		{name: "fail empty posters list", more: listBlock + `posters = []` + "\n", wantErr: ErrInvalid, wantKey: "list[0].posters"},
		{name: "fail poster not an address", more: listBlock + `posters = ["boss"]` + "\n", wantErr: ErrInvalid, wantKey: "list[0].posters"},
		{name: "fail posters not strings", more: listBlock + `posters = [1, 2]` + "\n", wantErr: ErrSyntax},
		{name: "fail posters a number", more: listBlock + `posters = 3` + "\n", wantErr: ErrSyntax},
		{name: "fail missing address", more: strings.Replace(listBlock, `address = "team@Example.TEST"`, "", 1), wantErr: ErrMissing, wantKey: "list[0].address"},
		{name: "fail bad address", more: strings.Replace(listBlock, `"team@Example.TEST"`, `"Team <team@example.test>"`, 1), wantErr: ErrInvalid, wantKey: "list[0].address"},
		{name: "fail missing key", more: strings.Replace(listBlock, `key = "pkcs11:token=appliance;object=team"`, "", 1), wantErr: ErrMissing, wantKey: "list[0].key"},
		{name: "fail key on another token", more: strings.Replace(listBlock, "token=appliance", "token=other", 1), wantErr: ErrInvalid, wantKey: "list[0].key"},
		{name: "fail missing cert", more: strings.Replace(listBlock, `cert = "/etc/appliance/lists/team.pem"`, "", 1), wantErr: ErrMissing, wantKey: "list[0].cert"},
		{name: "fail missing members file", more: strings.Replace(listBlock, `members_file = "/etc/appliance/lists/team.members"`, "", 1), wantErr: ErrMissing, wantKey: "list[0].members_file"},
		{name: "fail duplicate list", more: listBlock + strings.Replace(listBlock, "team@Example.TEST", "TEAM@example.test", 1), wantErr: ErrDuplicate, wantKey: "list[1].address"},
		{name: "fail list is a sender", more: strings.Replace(listBlock, "team@Example.TEST", "alice@example.test", 1), wantErr: ErrConflict, wantKey: "list[0].address"},
		{name: "fail unknown key", more: listBlock + `owner = "x@example.test"` + "\n", wantErr: ErrUnknownKey, wantKey: "list.owner"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(base + tc.more))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("Parse succeeded")
				}
				if findError(err, tc.wantErr, tc.wantKey) == nil {
					t.Fatalf("got %v, want %v for %q", err, tc.wantErr, tc.wantKey)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(c.Lists, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c.Lists, tc.want)
			}
		})
	}
}

func TestLoadResolvesListPaths(t *testing.T) {
	dir := t.TempDir()
	data := base + strings.NewReplacer(`"/etc/appliance/lists/team.pem"`, `"lists/team.pem"`,
		`"/etc/appliance/lists/team.members"`, `"team.members"`).Replace(listBlock)
	path := filepath.Join(dir, "appliance.toml")
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Lists[0].Cert, filepath.Join(dir, "lists", "team.pem"); got != want {
		t.Errorf("ok cert: got %q, want %q", got, want)
	}
	if got, want := c.Lists[0].MembersFile, filepath.Join(dir, "team.members"); got != want {
		t.Errorf("ok members_file: got %q, want %q", got, want)
	}
}
