package tty

import (
	"fmt"
	"io"
)

// Checklist prints the lines of a check, one per step, aligned and escaped: "ok", "warn" or
// "FAIL", what was checked, and the detail or the reason. Failed counts the failures.
type Checklist struct {
	W      io.Writer
	Failed int
}

func (c *Checklist) OK(what, detail string) {
	fmt.Fprintf(c.W, "ok    %s: %s\n", Escape(what), Escape(detail))
}

func (c *Checklist) Warn(what, detail string) {
	fmt.Fprintf(c.W, "warn  %s: %s\n", Escape(what), Escape(detail))
}

func (c *Checklist) Fail(what string, err error) {
	c.Failed++
	fmt.Fprintf(c.W, "FAIL  %s: %s\n", Escape(what), EscapeLines(err.Error()))
}
