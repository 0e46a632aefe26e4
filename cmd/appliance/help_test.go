package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"appliance/config"
)

// configKeys lists every key of config.Config as table and key ("smtp", "listen";
// "directory.ldap", "url"; "[sender]", "address" and "[policy.domain]", "rid" for arrays of
// tables), from the toml tags, so a
// key added to the struct shows up here without anyone remembering to.
func configKeys(t reflect.Type, table string, out *[][2]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if f.Anonymous && tag == "" {
			configKeys(f.Type, table, out) // embedded: its keys sit in the same table
			continue
		}
		if tag == "" || tag == "-" {
			continue
		}
		ft := f.Type
		array := false
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			ft, array = ft.Elem(), true
		}
		_, custom := reflect.New(ft).Interface().(interface{ UnmarshalTOML(any) error })
		if ft.Kind() != reflect.Struct || custom {
			*out = append(*out, [2]string{table, tag})
			continue
		}
		sub := tag
		if table != "" {
			sub = table + "." + tag
		}
		if array {
			sub = "[" + sub + "]" // an array of tables: [[sender]], [[policy.domain]]
		}
		configKeys(ft, sub, out)
	}
}

func allConfigKeys(t *testing.T) [][2]string {
	var keys [][2]string
	configKeys(reflect.TypeOf(config.Config{}), "", &keys)
	if len(keys) < 50 {
		t.Fatalf("only %d keys found in config.Config: the walk is broken", len(keys))
	}
	return keys
}

func TestHelpConfigCoversEveryKey(t *testing.T) {
	var b bytes.Buffer
	writeConfigHelp(&b)
	help := b.String()
	// Sections in the order printed, each with its text.
	sections := map[string]string{}
	for _, part := range regexp.MustCompile(`(?m)^\[`).Split(help, -1)[1:] {
		title, body, _ := strings.Cut(part, "\n")
		sections[strings.TrimSuffix(title, "]")] = body
	}
	for _, k := range allConfigKeys(t) {
		t.Run("ok "+k[0]+" "+k[1], func(t *testing.T) {
			body, ok := sections[k[0]]
			if !ok {
				t.Fatalf("no [%s] section in `appliance help config`", k[0])
			}
			if !regexp.MustCompile(`(?m)^    ` + regexp.QuoteMeta(k[1]) + ` \(`).MatchString(body) {
				t.Fatalf("key %q is not described in the [%s] section of `appliance help config`", k[1], k[0])
			}
		})
	}
}

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "appliance.toml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example, uncommented keys only, must be a valid configuration.
	if _, err := config.Parse(data); err != nil {
		t.Fatalf("deploy/appliance.toml does not parse: %v", err)
	}
	// Every key appears, set or commented out, after its table's header.
	text := string(data)
	for _, k := range allConfigKeys(t) {
		t.Run("ok "+k[0]+" "+k[1], func(t *testing.T) {
			table := "[" + k[0] + "]" // "[[sender]]" for "[sender]"
			key := k[1]
			h := regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(table) + `\s*$`).FindStringIndex(text)
			if h == nil {
				t.Fatalf("deploy/appliance.toml has no %s header", table)
			}
			section := text[h[1]:]
			if next := regexp.MustCompile(`(?m)^(# )?\[`).FindStringIndex(section); next != nil {
				section = section[:next[0]]
			}
			if !regexp.MustCompile(`(?m)^(# )?` + regexp.QuoteMeta(key) + ` = `).MatchString(section) {
				t.Fatalf("deploy/appliance.toml does not show %s under %s", key, table)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"ok help config", []string{"help", "config"}, 0, "APPLIANCE.TOML(5)"},
		{"ok help man", []string{"help", "man"}, 0, ".TH APPLIANCE 8"},
		{"ok help man config", []string{"help", "man", "config"}, 0, ".SH DESCRIPTION"},
		{"ok help completion bash", []string{"help", "completion", "bash"}, 0, "complete -o default -F _appliance appliance"},
		{"ok help command", []string{"help", "seal"}, 0, "usage: appliance seal"},
		{"fail help unknown topic", []string{"help", "nope"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Fatalf("stdout %q lacks %q", stdout.String(), tt.out)
			}
		})
	}
}

// TestCheckConfigBinaryErrors: the binary reports every problem of a file at once, each with
// the file and line, and a suggestion for a misspelt key.
func TestCheckConfigBinaryErrors(t *testing.T) {
	t.Parallel()
	f := newCheckFixture(t)
	path := filepath.Join(f.dir, "appliance.toml")
	f.write("appliance.toml", strings.Replace(checkBase, "[relay]\n", "[relay]\nnext_hops = 1\n", 1)+"[smtp]\nmax_recipents = 5\n", 0o600)
	r := runBin(t, nil, "", nil, "check-config", "-config", path)
	if r.code != 1 {
		t.Fatal(r)
	}
	for _, want := range []string{
		path + ":8: relay.next_hops: unknown key: not a known setting; did you mean next_hop?",
		path + ":19: smtp.max_recipents: unknown key: not a known setting; did you mean max_recipients?",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q\n%s", want, r)
		}
	}
}
