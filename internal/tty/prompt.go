package tty

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Prompter asks an operator questions, one line each, with a default in brackets. In batch
// mode it asks nothing and every answer is the default. Overwrite lets WriteNew replace files
// without asking.
type Prompter struct {
	In               *bufio.Reader
	Out              io.Writer
	Batch, Overwrite bool
}

// NewPrompter asks on out and reads the answers from in.
func NewPrompter(in io.Reader, out io.Writer, batch bool) *Prompter {
	return &Prompter{In: bufio.NewReader(in), Out: out, Batch: batch}
}

// Ask returns the answer to question, def when the answer is empty, in batch mode or at EOF.
func (p *Prompter) Ask(question, def string) string {
	if p.Batch {
		return def
	}
	if def != "" {
		fmt.Fprintf(p.Out, "%s [%s]: ", question, def)
	} else {
		fmt.Fprintf(p.Out, "%s: ", question)
	}
	line, err := p.In.ReadString('\n')
	line = strings.TrimSpace(line)
	if line == "" {
		if err != nil {
			fmt.Fprintln(p.Out)
		}
		return def
	}
	return line
}

// Confirm asks a yes/no question; the default is no.
func (p *Prompter) Confirm(question string) bool {
	a := strings.ToLower(p.Ask(question+" (y/N)", ""))
	return a == "y" || a == "yes"
}

// WriteNew writes data to path (its directory made) and says so; a file already there is kept,
// and said to be, unless Overwrite or the operator's yes to the question.
func (p *Prompter) WriteNew(path string, data []byte, mode os.FileMode) error {
	if _, err := os.Stat(path); err == nil {
		if !p.Overwrite && (p.Batch || !p.Confirm(fmt.Sprintf("%s exists; overwrite it?", path))) {
			fmt.Fprintf(p.Out, "kept %s as it is\n", path)
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	fmt.Fprintf(p.Out, "wrote %s\n", path)
	return nil
}
