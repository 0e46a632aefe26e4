package manpage

import "testing"

func TestRoff(t *testing.T) {
	text := "APPLIANCE(8)\n\nNAME\n    appliance - relay\n\nOPTIONS\n    -config FILE\n.dot at the margin\n'quote\nback\\slash\n[not a section]\n"
	want := `.TH APPLIANCE 8 "" "appliance" "appliance manual"
.SH NAME
.nf
    appliance - relay

.fi
.SH OPTIONS
.nf
    -config FILE
\&.dot at the margin
\&'quote
back\eslash
[not a section]
.fi
`
	if got := Roff("APPLIANCE", "8", text); got != want {
		t.Errorf("Roff =\n%s\nwant\n%s", got, want)
	}
}
