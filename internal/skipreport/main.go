// Command skipreport reads `go test -json` output, prints every skipped test
// with its reason, and fails when a test listed as required skipped or, in a
// package that ran, did not run at all: in CI a required test that does not
// run is a test that did not pass.
//
//	go test -json ./... > test.json
//	go run ./internal/skipreport -failures -required scripts/ci-required.txt test.json
//
// -failures first prints the output of the tests and packages that failed,
// which -json otherwise hides in its events.
//
// The required list has one test a line, "import/path TestName" (a subtest
// as TestName/sub_name, as go test names it); # starts a comment.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of test2json output.
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type key struct{ pkg, test string }

// report is what the output says about each test.
type report struct {
	skipped  map[key]string // reason
	ran      map[key]bool   // passed, failed or skipped
	packages map[string]bool
	// failed is the output of each failed test, and of each failed
	// package outside its tests (build errors, panics), in order.
	failed []string
	// summary is go test's own closing line of each package ("ok  \tpath\t1.2s", "FAIL\tpath").
	summary []string
}

func read(r io.Reader) (*report, error) {
	rep := &report{skipped: map[key]string{}, ran: map[key]bool{}, packages: map[string]bool{}}
	out := map[key][]string{}
	pkgOut := map[string][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 || line[0] != '{' {
			continue // go test's own messages, build errors
		}
		var e event
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("bad test2json line %q: %w", line, err)
		}
		if e.Package != "" {
			rep.packages[e.Package] = true
		}
		if e.Test == "" {
			switch e.Action {
			case "output":
				pkgOut[e.Package] = append(pkgOut[e.Package], e.Output)
				if strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL\t") {
					rep.summary = append(rep.summary, e.Output)
				}
			case "fail":
				rep.failed = append(rep.failed, fmt.Sprintf("FAIL %s\n%s", e.Package, strings.Join(pkgOut[e.Package], "")))
			}
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "output":
			out[k] = append(out[k], e.Output)
		case "skip":
			rep.skipped[k] = reason(out[k])
			rep.ran[k] = true
		case "fail":
			rep.ran[k] = true
			rep.failed = append(rep.failed, fmt.Sprintf("FAIL %s %s\n%s", e.Package, e.Test, strings.Join(out[k], "")))
		case "pass":
			rep.ran[k] = true
		}
	}
	return rep, sc.Err()
}

// reason is the test's log after its "--- SKIP" line.
func reason(out []string) string {
	var r []string
	after := false
	for _, l := range out {
		if strings.Contains(l, "--- SKIP") {
			after = true
			continue
		}
		if after && strings.TrimSpace(l) != "" {
			r = append(r, strings.TrimSpace(l))
		}
	}
	if len(r) == 0 {
		for _, l := range out {
			if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "=== ") && !strings.HasPrefix(t, "--- ") {
				r = append(r, t)
			}
		}
	}
	return strings.Join(r, " | ")
}

// readRequired parses the required list.
func readRequired(r io.Reader) ([]key, error) {
	var req []key
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		switch len(f) {
		case 0:
			continue
		case 2:
			req = append(req, key{f[0], f[1]})
		default:
			return nil, fmt.Errorf("line %d: want \"import/path TestName\", got %q", n, sc.Text())
		}
	}
	return req, sc.Err()
}

// check prints the skips to w and returns an error naming every required
// test that skipped or did not run in a package that ran.
func check(w io.Writer, rep *report, required []key) error {
	var keys []key
	for k := range rep.skipped {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].pkg != keys[j].pkg {
			return keys[i].pkg < keys[j].pkg
		}
		return keys[i].test < keys[j].test
	})
	fmt.Fprintf(w, "%d tests skipped\n", len(keys))
	for _, k := range keys {
		fmt.Fprintf(w, "SKIP %s %s: %s\n", k.pkg, k.test, rep.skipped[k])
	}
	var bad []string
	for _, k := range required {
		switch {
		case !rep.packages[k.pkg]:
			// The package was not part of this run.
		case !rep.ran[k]:
			bad = append(bad, fmt.Sprintf("%s %s did not run", k.pkg, k.test))
		case isSkipped(rep, k):
			bad = append(bad, fmt.Sprintf("%s %s skipped: %s", k.pkg, k.test, rep.skipped[k]))
		}
	}
	if len(bad) > 0 {
		return errors.New("required tests did not pass in CI:\n  " + strings.Join(bad, "\n  "))
	}
	return nil
}

func isSkipped(rep *report, k key) bool {
	_, ok := rep.skipped[k]
	return ok
}

func main() {
	requiredFile := flag.String("required", "", "file listing the tests that must not skip")
	failures := flag.Bool("failures", false, "first print the output of every failed test and package")
	summary := flag.Bool("summary", false, "print go test's closing line of every package, as go test without -json does")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: skipreport [-required FILE] [test.json ...] (stdin without files)")
		flag.PrintDefaults()
	}
	flag.Parse()
	var in io.Reader = os.Stdin
	if flag.NArg() > 0 {
		var rs []io.Reader
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "skipreport:", err)
				os.Exit(2)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		in = io.MultiReader(rs...)
	}
	rep, err := read(in)
	if err != nil {
		fmt.Fprintln(os.Stderr, "skipreport:", err)
		os.Exit(2)
	}
	if *summary {
		for _, l := range rep.summary {
			fmt.Print(l)
		}
	}
	if *failures {
		for _, f := range rep.failed {
			fmt.Print(f)
		}
	}
	var required []key
	if *requiredFile != "" {
		f, err := os.Open(*requiredFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "skipreport:", err)
			os.Exit(2)
		}
		required, err = readRequired(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "skipreport: %s: %v\n", *requiredFile, err)
			os.Exit(2)
		}
	}
	if err := check(os.Stdout, rep, required); err != nil {
		fmt.Fprintln(os.Stderr, "skipreport:", err)
		os.Exit(1)
	}
}
