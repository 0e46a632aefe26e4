package lists

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMembers(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want []string
		line int
	}{
		{"ok comments and blanks", "# team\n\nbob@example.test\n  # indented comment\ndave@EXAMPLE.test  \n", []string{"bob@example.test", "dave@example.test"}, 0},
		{"ok duplicates folded", "Bob@example.test\nbob@Example.test\n", []string{"bob@example.test"}, 0},
		{"ok crlf", "bob@example.test\r\ncarol@example.test\r\n", []string{"bob@example.test", "carol@example.test"}, 0},
		{"ok empty", "# nobody yet\n", nil, 0},
		{"fail not an address", "bob@example.test\nbob\n", nil, 2},
		{"fail display name", "Bob <bob@example.test>\n", nil, 1},
		{"fail two on a line", "bob@example.test, carol@example.test\n", nil, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMembers(strings.NewReader(tc.in), false)
			if tc.line != 0 {
				var me *MembersError
				if !errors.As(err, &me) || me.Line != tc.line {
					t.Fatalf("ParseMembers = %v, want an error on line %d", err, tc.line)
				}
				return
			}
			if err != nil || strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("ParseMembers = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
