package tty

// A progress line for commands that work through many files (inspect of a whole maildir). It is
// drawn on stderr only when stderr is a terminal, so output piped or redirected to a file, and
// every script's view of stderr, stays exactly as without it; reports go to stdout regardless.

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	xterm "golang.org/x/term"
)

// progressEvery limits redraws: a terminal repainting per file would cost more than the work.
const progressEvery = 100 * time.Millisecond

// progressMin is the fewest items worth a progress line.
const progressMin = 2

// Progress is a progress line: Step per item, Done at the end.
type Progress struct {
	w     io.Writer // nil: quiet
	verb  string
	total int
	n     int
	last  time.Time
	now   func() time.Time
	width int
}

// NewProgress returns a progress line on w for total items, quiet unless w is a terminal.
func NewProgress(w io.Writer, verb string, total int) *Progress {
	f, ok := w.(*os.File)
	tty := ok && xterm.IsTerminal(int(f.Fd()))
	return newProgressTTY(w, verb, total, tty)
}

func newProgressTTY(w io.Writer, verb string, total int, tty bool) *Progress {
	p := &Progress{verb: verb, total: total, now: time.Now, width: 80}
	if tty && total >= progressMin {
		p.w = w
		if f, ok := w.(*os.File); ok {
			if cols, _, err := xterm.GetSize(int(f.Fd())); err == nil && cols > 20 {
				p.width = cols
			}
		}
	}
	return p
}

// Step records that the next item, name, is being worked on.
func (p *Progress) Step(name string) {
	p.n++
	if p.w == nil {
		return
	}
	if now := p.now(); p.n == p.total || now.Sub(p.last) >= progressEvery {
		p.last = now
		p.draw(filepath.Base(name))
	}
}

func (p *Progress) draw(name string) {
	const barWidth = 20
	filled := barWidth * p.n / p.total
	bar := make([]byte, barWidth)
	for i := range bar {
		bar[i] = '.'
		if i < filled {
			bar[i] = '#'
		}
	}
	line := fmt.Sprintf("%s [%s] %d/%d %s", p.verb, bar, p.n, p.total, name)
	if len(line) > p.width-1 {
		line = line[:p.width-1]
	}
	// \r and erase-to-end-of-line: one line, redrawn in place.
	fmt.Fprintf(p.w, "\r%s\x1b[K", line)
}

// Done clears the line, so what follows starts on a clean one.
func (p *Progress) Done() {
	if p.w != nil {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.w = nil
	}
}
