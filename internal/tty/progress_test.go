package tty

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgress(t *testing.T) {
	tests := []struct {
		name  string
		tty   bool
		total int
		want  []string // substrings of the output, in order; nil: no output at all
	}{
		{"ok terminal", true, 3, []string{"\rinspect [######..............] 1/3 a.eml\x1b[K", "2/3 b.eml", "[####################] 3/3 c.eml\x1b[K", "\r\x1b[K"}},
		{"ok quiet when not a terminal", false, 3, nil},
		{"ok quiet for one file", true, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			p := newProgressTTY(&b, "inspect", tt.total, tt.tty)
			clock := time.Unix(0, 0)
			p.now = func() time.Time { return clock }
			for _, name := range []string{"/maildir/cur/a.eml", "b.eml", "c.eml"}[:tt.total] {
				p.Step(name)
				clock = clock.Add(time.Second)
			}
			p.Done()
			out := b.String()
			if tt.want == nil {
				if out != "" {
					t.Fatalf("output %q, want none", out)
				}
				return
			}
			rest := out
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("output %q lacks %q (in order)", out, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestProgressThrottles(t *testing.T) {
	var b bytes.Buffer
	p := newProgressTTY(&b, "inspect", 1000, true)
	clock := time.Unix(0, 0)
	p.now = func() time.Time { return clock }
	for i := 0; i < 1000; i++ {
		p.Step("x.eml")
		clock = clock.Add(time.Millisecond) // 1000 files in a second: ~10 redraws
	}
	if n := strings.Count(b.String(), "\r"); n < 5 || n > 15 {
		t.Fatalf("%d redraws for 1000 files in 1s, want about 10", n)
	}
	if !strings.HasSuffix(b.String(), "1000/1000 x.eml\x1b[K") {
		t.Fatalf("last draw is not the final count: %q", b.String()[b.Len()-40:])
	}
}

func TestProgressDetectsPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if p := NewProgress(w, "inspect", 10); p.w != nil {
		t.Fatal("progress drawn into a pipe")
	}
}
