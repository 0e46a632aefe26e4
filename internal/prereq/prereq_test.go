// Package prereq keeps scripts/prereqs.sh (the programs the tests drive, with their Debian
// packages) in step with the code and with scripts/deps.sh (what gets installed), so a test cannot
// come to depend on a program that only the machine it was written on happened to have.
package prereq

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const root = "../.."

// table reads the tool|package|check lines of scripts/prereqs.sh.
func table(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "scripts/prereqs.sh"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	start := strings.Index(s, "<<'TABLE'\n")
	end := strings.Index(s, "\nTABLE\n")
	if start < 0 || end < start {
		t.Fatal("scripts/prereqs.sh: no TABLE here-document")
	}
	tools := map[string]string{}
	for _, line := range strings.Split(s[start+len("<<'TABLE'\n"):end], "\n") {
		f := strings.SplitN(line, "|", 3)
		if len(f) != 3 || f[0] == "" || f[1] == "" || f[2] == "" {
			t.Fatalf("scripts/prereqs.sh: malformed table line %q", line)
		}
		tools[f[0]] = f[1]
	}
	return tools
}

// installed reads the pkgs=(...) list of scripts/deps.sh.
func installed(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "scripts/deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^pkgs=\(([^)]*)\)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("scripts/deps.sh: no pkgs=(...) line")
	}
	pkgs := map[string]bool{}
	for _, p := range strings.Fields(string(m[1])) {
		pkgs[p] = true
	}
	return pkgs
}

func TestEveryTablePackageIsInstalledByDeps(t *testing.T) {
	pkgs := installed(t)
	for tool, pkg := range table(t) {
		if !pkgs[pkg] {
			t.Errorf("scripts/prereqs.sh needs package %s (for %s), but scripts/deps.sh does not install it", pkg, tool)
		}
	}
}

// TestEveryProgramRunIsInTheTable finds the programs the Go code runs: the literal names given to
// exec.Command, exec.CommandContext and exec.LookPath, literal /usr/bin and /usr/sbin paths, and,
// in files that import os/exec, any other string literal naming a program installed here from a
// package outside Debian's required set (tables of command lines, names handed to helpers).
func TestEveryProgramRunIsInTheTable(t *testing.T) {
	tools := table(t)
	found := map[string][]string{} // program -> where
	add := func(name, where string) {
		name = filepath.Base(name)
		found[name] = append(found[name], where)
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		usesExec := false
		for _, imp := range f.Imports {
			if imp.Path.Value == `"os/exec"` {
				usesExec = true
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ImportSpec:
				return false
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "exec" {
					return true
				}
				arg := 0
				switch sel.Sel.Name {
				case "Command", "LookPath":
				case "CommandContext":
					arg = 1
				default:
					return true
				}
				if len(n.Args) > arg {
					if s, ok := literal(n.Args[arg]); ok {
						add(s, fset.Position(n.Pos()).String())
					}
				}
			case *ast.BasicLit:
				s, ok := literal(n)
				if !ok {
					return true
				}
				if regexp.MustCompile(`^/usr/s?bin/[A-Za-z0-9._+-]+$`).MatchString(s) {
					add(s, fset.Position(n.Pos()).String())
				} else if usesExec && optionalProgram(s) {
					add(s, fset.Position(n.Pos()).String())
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The shell and the toolchain are the machine's own, not Debian packages the suite installs;
	// coreutils are in every Debian root.
	base := map[string]bool{"bash": true, "sh": true, "go": true, "cp": true, "chown": true, "true": true, "false": true,
		"dpkg": true, "dpkg-query": true}
	var names []string
	for name := range found {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if base[name] || tools[name] != "" {
			continue
		}
		t.Errorf("the code runs %q (%s) but scripts/prereqs.sh has no line for it: add tool|package|check there and the package to scripts/deps.sh", name, found[name][0])
	}
	for _, want := range []string{"openssl", "swaks", "gpgsm", "cmsutil", "softhsm2-util", "slapd", "postfix"} {
		if _, ok := found[want]; !ok {
			t.Errorf("the scan found no use of %s: the scanner is broken or the test no longer drives it", want)
		}
	}
}

func literal(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

var required = map[string]bool{} // program name -> installed from a package of priority required

// optionalProgram reports whether s names a program on this machine that comes from a Debian
// package outside the required set (which every Debian root has).
func optionalProgram(s string) bool {
	if !regexp.MustCompile(`^[a-z][a-z0-9._+-]*$`).MatchString(s) {
		return false
	}
	if v, ok := required[s]; ok {
		return !v
	}
	var path string
	for _, dir := range []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin"} {
		if fi, err := os.Stat(filepath.Join(dir, s)); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			path = filepath.Join(dir, s)
			break
		}
	}
	if path == "" {
		required[s] = true // not a program here: nothing to say
		return false
	}
	out, err := exec.Command("dpkg", "-S", path).Output()
	if err != nil {
		// Not from a package (or dpkg -S does not know the merged-/usr alias): judge by name only.
		required[s] = true
		return false
	}
	pkg := strings.TrimSpace(strings.SplitN(string(out), ":", 2)[0])
	prio, err := exec.Command("dpkg-query", "-W", "-f=${Priority}", pkg).Output()
	isRequired := err == nil && strings.TrimSpace(string(prio)) == "required"
	required[s] = isRequired
	return !isRequired
}
