package lists

import (
	"strings"
	"testing"
)

func FuzzParseMembers(f *testing.F) {
	f.Add("# list\nbob@example.test\n\nCarol@Example.test\r\n")
	f.Add("bob\n")
	f.Add("\"a b\"@example.test\n")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseMembers(strings.NewReader(in), false)
		if err != nil {
			return
		}
		for i, a := range got {
			if i > 0 && got[i-1] >= a {
				t.Fatalf("members not sorted and unique: %q", got)
			}
			if strings.ContainsAny(a, "\r\n<>,") {
				t.Fatalf("member %q", a)
			}
		}
	})
}
