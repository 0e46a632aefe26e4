package directory

import (
	"strings"
	"testing"
)

func TestEffectiveProfile(t *testing.T) {
	d := newFixture(t).open(t, t0)
	pinned := map[string]string{"pinned.test": ProfileModern}
	for _, tc := range []struct {
		name, addr  string
		valid       []*Entry
		want, whyIs string
	}{
		{"ok pinned by domain", "<Bob@Pinned.TEST>", []*Entry{{Profile: ProfileCompat}}, ProfileModern, "pinned by"},
		{"ok nothing learnt", "a@x.test", []*Entry{{}}, "fallback", "policy.profile"},
		{"ok from capabilities", "a@x.test", []*Entry{{Profile: ProfileModern}}, ProfileModern, "sMIMECapabilities"},
		{"ok certificates differ", "a@x.test", []*Entry{{Profile: ProfileModern}, {}}, ProfileCompat, "differ"},
		{"ok same profile twice", "a@x.test", []*Entry{{Profile: ProfileModern}, {Profile: ProfileModern}}, ProfileModern, "sMIMECapabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := d.EffectiveProfile(tc.addr, tc.valid, pinned, "fallback")
			if got != tc.want || !strings.Contains(why, tc.whyIs) {
				t.Fatalf("EffectiveProfile = %q (%s), want %q (%s)", got, why, tc.want, tc.whyIs)
			}
		})
	}
}
