// Package configref writes the configuration reference from the one place it is written: the
// types of package config and their doc comments. It produces the key reference that
// `appliance help config` prints (and the man page is made from) and the annotated example
// deploy/appliance.toml, so neither can drift from the code; a test in package config fails
// when the committed files differ from what Generate makes now.
//
// A field's doc comment is its description, for operators. Two kinds of line in it are taken
// out of the text:
//
//	Value: path, required       what the key takes, as the reference prints it; without
//	                            this line it is worked out from the Go type and the default
//	Example: "/etc/appliance/pin"   the value the example file shows; default: the default
//
// A key marked ", required" is set in the example file, every other key is shown commented out.
// A struct type's doc comment introduces its table. Fields of files that others extend in
// parallel may take their text from extraDocs instead.
package configref

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"appliance/config"
)

// Command regenerates the reference and the example; the drift test names it.
const Command = "go generate ./config/"

// doc is a description with its Value and Example lines taken out.
type doc struct {
	text    []string // paragraphs
	value   string
	example string
}

func parseDoc(s string) doc {
	var d doc
	var para []string
	flush := func() {
		if len(para) > 0 {
			d.text = append(d.text, strings.Join(para, " "))
			para = nil
		}
	}
	for _, l := range strings.Split(s, "\n") {
		switch t := strings.TrimSpace(l); {
		case strings.HasPrefix(t, "Value:"):
			d.value = strings.TrimSpace(strings.TrimPrefix(t, "Value:"))
		case strings.HasPrefix(t, "Example:"):
			d.example = strings.TrimSpace(strings.TrimPrefix(t, "Example:"))
		case strings.HasPrefix(l, "\t") || strings.HasPrefix(l, "  "):
			// Code blocks are for readers of the source.
		case t == "":
			flush()
		default:
			para = append(para, t)
		}
	}
	flush()
	return d
}

// docs reads the doc comments of the struct types in dir: "Type" and "Type.Field".
func docs(dir string) (map[string]doc, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	out := map[string]doc{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				cg := ts.Doc
				if cg == nil && len(gd.Specs) == 1 {
					cg = gd.Doc
				}
				if cg != nil {
					out[ts.Name.Name] = parseDoc(cg.Text())
				}
				for _, fld := range st.Fields.List {
					if fld.Doc == nil {
						continue
					}
					for _, n := range fld.Names {
						out[ts.Name.Name+"."+n.Name] = parseDoc(fld.Doc.Text())
					}
				}
			}
		}
	}
	return out, nil
}

// Generate returns the reference text and the example file for the config package in dir.
// Keys without a description are listed in undocumented.
func Generate(dir string) (reference, example []byte, undocumented []string, err error) {
	d, err := docs(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	for k, v := range extraDocs {
		d[k] = parseDoc(v)
	}
	tables, keys := config.Schema()
	var ref, ex bytes.Buffer
	ex.WriteString(exampleHeader)
	for _, t := range append([]config.Table{{Name: "", Type: reflect.TypeOf(config.Config{})}}, tables...) {
		var tkeys []config.Key
		for _, k := range keys {
			if k.Table.Name == t.Name {
				tkeys = append(tkeys, k)
			}
		}
		if len(tkeys) == 0 {
			continue
		}
		header := "[" + t.Name + "]"
		if t.Array {
			header = "[[" + t.Name + "]]"
		}
		intro := d[t.Type.Name()]
		fmt.Fprintf(&ref, "\n%s\n", header)
		for _, p := range intro.text {
			ref.WriteString(wrap(p, "    ", "    "))
		}
		set := false
		for _, k := range tkeys {
			if required(describe(k, d).value) {
				set = true
			}
		}
		// Optional tables: arrays of tables and sub-tables show commented out when nothing in
		// them must be set.
		prefix := ""
		if !exampleTables[t.Name] && (t.Array || !set && strings.Contains(t.Name, ".")) {
			prefix = "# "
		}
		ex.WriteString("\n")
		if len(intro.text) > 0 {
			ex.WriteString(wrap(firstSentence(intro.text[0]), "# ", "# "))
		}
		fmt.Fprintf(&ex, "%s%s\n", prefix, header)
		for _, k := range tkeys {
			kd := describe(k, d)
			if len(kd.text) == 0 {
				undocumented = append(undocumented, k.Path()+" ("+k.Owner.Name()+"."+k.Field.Name+")")
				kd.text = []string{"Undocumented."}
			}
			fmt.Fprintf(&ref, "\n    %s (%s)\n", k.Name, kd.value)
			for _, p := range kd.text {
				ref.WriteString(wrap(p, "        ", "        "))
			}
			kp := prefix
			if kp == "" && !required(kd.value) {
				kp = "# "
			}
			ex.WriteString(wrap(firstSentence(kd.text[0]), "## ", "## "))
			fmt.Fprintf(&ex, "%s%s = %s\n", kp, k.Name, kd.example)
		}
	}
	return ref.Bytes(), ex.Bytes(), undocumented, nil
}

// required: ", required" or ", required unless ..." is set in the example; ", required with
// url" belongs to an optional table.
// exampleTables are the arrays of tables the example file fills in; the others are shown
// commented out.
var exampleTables = map[string]bool{"sender": true}

func required(value string) bool {
	return strings.Contains(value, ", required") && !strings.Contains(value, ", required with")
}

// describe fills in what a key's doc comment leaves out: the value from the type and default,
// the example from the default.
func describe(k config.Key, d map[string]doc) doc {
	kd := d[k.Owner.Name()+"."+k.Field.Name]
	if kd.value == "" {
		kd.value = kind(k.Field.Type)
		if !k.Default.IsZero() || k.Default.Kind() == reflect.Bool {
			kd.value += ", default " + render(k.Default)
		}
	}
	if kd.example == "" {
		kd.example = render(k.Default)
	}
	return kd
}

var durationType = reflect.TypeOf(time.Duration(0))

func kind(t reflect.Type) string {
	switch {
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Slice:
		return "array of " + kind(t.Elem()) + "s"
	}
	return t.Name()
}

// render writes v as a TOML value, durations as the strings the file takes ("5m", not 300000000000).
func render(v reflect.Value) string {
	if v.Type() == durationType {
		return `"` + shortDuration(time.Duration(v.Int())) + `"`
	}
	switch v.Kind() {
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	case reflect.Bool:
		return fmt.Sprint(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprint(v.Int())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = render(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return `""`
}

func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func firstSentence(p string) string {
	for i := 0; i+1 < len(p); i++ {
		if p[i] == '.' && p[i+1] == ' ' && !strings.HasSuffix(p[:i], "e.g") && !strings.HasSuffix(p[:i], "i.e") {
			return p[:i+1]
		}
	}
	return p
}

// wrap fills text to 100 columns, the first line after first, the rest after indent.
func wrap(text, first, indent string) string {
	var b strings.Builder
	line := first
	empty := true
	for _, word := range strings.Fields(text) {
		if !empty && len(line)+1+len(word) > 100 {
			b.WriteString(line + "\n")
			line, empty = indent, true
		}
		if !empty {
			line += " "
		}
		line += word
		empty = false
	}
	b.WriteString(line + "\n")
	return b.String()
}

const exampleHeader = `# /etc/appliance/appliance.toml: an example with every key. Generated from the source: do not
# edit by hand, run ` + "`" + Command + "`" + `. Keys that must be set are set; every other key is
# shown commented out ("# key = ...") at its default or with an example value; "## " lines say
# what a key is for, and ` + "`appliance help config`" + ` describes each in full. Check a file with:
#   appliance check-config -config /etc/appliance/appliance.toml -connect
`

// WriteFiles regenerates the committed files: dir/reference.txt and the example at examplePath.
func WriteFiles(dir, examplePath string) error {
	ref, ex, undocumented, err := Generate(dir)
	if err != nil {
		return err
	}
	for _, u := range undocumented {
		fmt.Fprintf(os.Stderr, "configref: warning: %s has no doc comment\n", u)
	}
	if err := os.WriteFile(filepath.Join(dir, "reference.txt"), ref, 0o644); err != nil {
		return err
	}
	return os.WriteFile(examplePath, ex, 0o644)
}
