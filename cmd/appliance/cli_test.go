package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestUsageErrors: a missing or wrong argument names itself, then shows the command's usage,
// with exit status 2, before anything is opened.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"fail serve without config", []string{"serve"}, []string{"-config FILE is required", "usage: appliance serve", "-config"}},
		{"fail check-config without config", []string{"check-config"}, []string{"missing -config FILE", "usage: appliance check-config", "-connect"}},
		{"fail check-config extra argument", []string{"check-config", "-config", "x.toml", "y"}, []string{`unexpected argument "y"`, "usage: appliance check-config"}},
		{"fail seal without from", []string{"seal", "-config", "x.toml"}, []string{"missing -from ADDR", "usage: appliance seal", "-rcpt"}},
		{"fail unknown flag", []string{"version", "-frob"}, []string{"flag provided but not defined: -frob", "usage: appliance version"}},
		{"fail unknown command", []string{"frob"}, []string{`unknown command "frob"`, "usage: appliance COMMAND"}},
		// The configuration does not exist: these are refused before it (or a token) is opened.
		{"fail keys generate without label", []string{"keys", "generate", "-config", "/nonexistent.toml"}, []string{"-label is required", "usage: appliance keys generate"}},
		{"fail keys generate bad type", []string{"keys", "generate", "-config", "/nonexistent.toml", "-label", "x", "-type", "dsa"}, []string{"-type:", "usage: appliance keys generate"}},
		{"fail keys csr without email", []string{"keys", "csr", "-config", "/nonexistent.toml", "-key", "pkcs11:object=x"}, []string{"-key and -email are required"}},
		{"fail keys import-cert without file", []string{"keys", "import-cert", "-config", "/nonexistent.toml", "-key", "pkcs11:object=x"}, []string{"one certificate file"}},
		{"fail keys unknown subcommand", []string{"keys", "frob", "-config", "/nonexistent.toml"}, []string{`unknown keys subcommand "frob"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runBin(t, nil, "", nil, tt.args...)
			if r.code != 2 {
				t.Fatal(r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q\n%s", w, r)
				}
			}
		})
	}
}

// TestHelpListsEveryFlag: `appliance COMMAND -h` lists every flag the command defines, read
// from the source so a new flag cannot be left out.
func TestHelpListsEveryFlag(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	def := regexp.MustCompile(`fs\.(?:String|Bool|Int|Duration|Var|StringVar|BoolVar|IntVar|DurationVar)\((?:&[\w.]+, )?"([a-z-]+)"`)
	fn := regexp.MustCompile(`(?m)^func run(\w+)\(`)
	byCommand := map[string][]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Flags belong to the run function they are defined in.
		locs := fn.FindAllSubmatchIndex(src, -1)
		for i, l := range locs {
			end := len(src)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			name := string(src[l[2]:l[3]])
			for _, m := range def.FindAllSubmatch(src[l[0]:end], -1) {
				byCommand[name] = append(byCommand[name], string(m[1]))
			}
		}
	}
	for _, c := range commands {
		fname := ""
		for _, part := range strings.Split(c.name, "-") {
			fname += strings.ToUpper(part[:1]) + part[1:]
		}
		flags := byCommand[fname]
		if len(flags) == 0 {
			continue
		}
		t.Run("ok "+c.name, func(t *testing.T) {
			r := runBin(t, nil, "", nil, c.name, "-h")
			out := r.stderr + r.stdout
			for _, f := range flags {
				if !strings.Contains(out, "  -"+f) {
					t.Errorf("`appliance %s -h` does not list -%s\n%s", c.name, f, r)
				}
			}
		})
	}
}

// TestNoColourWhenPiped: no escape sequence reaches a pipe, and messages' control characters
// are escaped in what the commands print.
func TestNoColourWhenPiped(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"-h"}, {"version"}, {"help", "config"}, {"seal", "-h"}} {
		r := runBin(t, nil, "", nil, args...)
		if strings.Contains(r.stdout+r.stderr, "\x1b") {
			t.Errorf("appliance %s wrote an escape sequence to a pipe\n%s", strings.Join(args, " "), r)
		}
	}
}

// TestInspectEscapes: what inspect prints from a message reaches the terminal escaped.
func TestInspectEscapes(t *testing.T) {
	t.Parallel()
	msg := "From: alice@example.test\r\nTo: \"\x1b[31mBob\" <bob@example.test>\r\nCc: carol@example.test (\x1b]0;owned\x07)\r\n" +
		"Subject: hi\r\n\r\nhello\r\n"
	path := filepath.Join(t.TempDir(), "m.eml")
	if err := os.WriteFile(path, []byte(msg), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runBin(t, nil, "", nil, "inspect", path)
	if r.code != 0 {
		t.Fatal(r)
	}
	if strings.ContainsAny(r.stdout, "\x1b\x07") {
		t.Fatalf("inspect printed raw control characters:\n%q", r.stdout)
	}
	if !strings.Contains(r.stdout, `\x1b`) {
		t.Fatalf("inspect does not show the escaped field:\n%s", r.stdout)
	}
}
