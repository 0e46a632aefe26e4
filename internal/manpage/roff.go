// Package manpage renders the commands' help text as manual pages.
package manpage

import (
	"fmt"
	"strings"
)

// Roff turns help text into a manual page: lines in capitals at the margin are sections, the
// rest is kept as laid out (no filling), with roff's special characters escaped.
func Roff(title, section, text string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %s %s \"\" \"appliance\" \"appliance manual\"\n", title, section)
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > 0 && strings.HasSuffix(lines[0], ")") {
		lines = lines[1:] // the title line, which .TH says
	}
	open := false
	for _, l := range lines {
		if l != "" && l == strings.ToUpper(l) && l[0] != ' ' && l[0] != '[' {
			if open {
				b.WriteString(".fi\n")
			}
			fmt.Fprintf(&b, ".SH %s\n.nf\n", l)
			open = true
			continue
		}
		if !open {
			if l == "" {
				continue
			}
			b.WriteString(".nf\n")
			open = true
		}
		l = strings.ReplaceAll(l, `\`, `\e`)
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		b.WriteString(l + "\n")
	}
	if open {
		b.WriteString(".fi\n")
	}
	return b.String()
}
