package tty

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrompter(t *testing.T) {
	var out strings.Builder
	p := NewPrompter(strings.NewReader("answer\n\ny\n"), &out, false)
	if got := p.Ask("name", "def"); got != "answer" {
		t.Errorf("Ask = %q, want the answer", got)
	}
	if got := p.Ask("name", "def"); got != "def" {
		t.Errorf("Ask of an empty line = %q, want the default", got)
	}
	if !p.Confirm("sure?") {
		t.Error("Confirm of y = false")
	}
	if p.Confirm("again?") { // EOF
		t.Error("Confirm at EOF = true")
	}
	if want := "name [def]: name [def]: sure? (y/N): again? (y/N): \n"; out.String() != want {
		t.Errorf("asked %q, want %q", out.String(), want)
	}
	out.Reset()
	b := NewPrompter(strings.NewReader("ignored\n"), &out, true)
	if b.Ask("name", "def") != "def" || b.Confirm("sure?") || out.Len() != 0 {
		t.Errorf("batch mode asked %q", out.String())
	}
}

func TestChecklist(t *testing.T) {
	var out strings.Builder
	c := &Checklist{W: &out}
	c.OK("token", "ready")
	c.Warn("cert", "expires \x1b[5msoon")
	c.Fail("next hop", errors.New("refused\nand more"))
	want := "ok    token: ready\nwarn  cert: expires \\x1b[5msoon\nFAIL  next hop: refused\nand more\n"
	if out.String() != want || c.Failed != 1 {
		t.Errorf("printed %q (%d failed), want %q", out.String(), c.Failed, want)
	}
}

func TestWriteNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "f")
	var out strings.Builder
	p := NewPrompter(strings.NewReader("n\ny\n"), &out, false)
	read := func() string { b, _ := os.ReadFile(path); return string(b) }
	for _, step := range []struct{ data, want string }{
		{"one", "one"},     // new: written
		{"two", "one"},     // exists, answered n: kept
		{"three", "three"}, // exists, answered y: overwritten
	} {
		if err := p.WriteNew(path, []byte(step.data), 0o600); err != nil || read() != step.want {
			t.Fatalf("WriteNew(%q): %v, file %q, want %q", step.data, err, read(), step.want)
		}
	}
	p = NewPrompter(strings.NewReader(""), &out, true)
	if err := p.WriteNew(path, []byte("batch"), 0o600); err != nil || read() != "three" {
		t.Fatalf("batch without Overwrite replaced the file: %v %q", err, read())
	}
	p.Overwrite = true
	if err := p.WriteNew(path, []byte("forced"), 0o600); err != nil || read() != "forced" {
		t.Fatalf("Overwrite kept the file: %v %q", err, read())
	}
	if !strings.Contains(out.String(), "kept "+path+" as it is") || !strings.Contains(out.String(), "wrote "+path) {
		t.Errorf("said %q", out.String())
	}
}
