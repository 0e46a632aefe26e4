package config

import (
	"regexp"
	"strconv"
	"strings"
)

// keyLines maps dotted key paths to the line that defines them, for error
// messages. toml.MetaData keeps key positions private, so this is a small
// line scanner of its own: it understands tables, arrays of tables, dotted
// and quoted keys, comments and multi-line strings, which is all a config
// file uses. Keys in the n-th [[array]] are recorded both as "array[n].key"
// and, for their first occurrence, as "array.key" (the form
// toml.MetaData.Undecoded reports). A line it cannot place is skipped: the
// worst outcome is an error without a line number.
func keyLines(data []byte) map[string]int {
	out := map[string]int{}
	set := func(k string, line int) {
		if _, ok := out[k]; !ok {
			out[k] = line
		}
	}
	counts := map[string]int{}
	table, plainTable := "", ""
	inMulti := "" // the delimiter of an open multi-line string
	for i, raw := range strings.Split(string(data), "\n") {
		n := i + 1
		line := raw
		if inMulti != "" {
			if !strings.Contains(line, inMulti) {
				continue
			}
			// The rest of a closing line holds no key.
			inMulti = ""
			continue
		}
		line = strings.TrimSpace(stripComment(line))
		if line == "" {
			continue
		}
		switch {
		case strings.HasPrefix(line, "[["):
			name := normKey(strings.TrimSuffix(strings.TrimPrefix(line, "[["), "]]"))
			idx := counts[name]
			counts[name] = idx + 1
			table = name + "[" + strconv.Itoa(idx) + "]"
			plainTable = name
			set(table, n)
			set(plainTable, n)
			continue
		case strings.HasPrefix(line, "["):
			name := normKey(strings.TrimSuffix(strings.TrimPrefix(line, "["), "]"))
			table, plainTable = name, name
			set(table, n)
			continue
		}
		eq := indexOutsideQuotes(line, '=')
		if eq < 0 {
			continue
		}
		key := normKey(line[:eq])
		if key == "" {
			continue
		}
		set(join(table, key), n)
		set(join(plainTable, key), n)
		value := line[eq+1:]
		for _, d := range []string{`"""`, `'''`} {
			if strings.Count(value, d)%2 == 1 {
				inMulti = d
				break
			}
		}
	}
	return out
}

func join(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

var keySpace = regexp.MustCompile(`\s*\.\s*`)

// normKey turns ` a . "b" ` into `a.b`. Quoted keys containing dots are
// not told apart from dotted keys; config keys never contain dots.
func normKey(s string) string {
	s = strings.TrimSpace(s)
	s = keySpace.ReplaceAllString(s, ".")
	s = strings.NewReplacer(`"`, "", `'`, "").Replace(s)
	return s
}

func stripComment(s string) string {
	if i := indexOutsideQuotes(s, '#'); i >= 0 {
		return s[:i]
	}
	return s
}

func indexOutsideQuotes(s string, c byte) int {
	var quote byte
	for i := 0; i < len(s); i++ {
		switch {
		case quote != 0:
			if s[i] == '\\' && quote == '"' {
				i++
			} else if s[i] == quote {
				quote = 0
			}
		case s[i] == '"' || s[i] == '\'':
			quote = s[i]
		case s[i] == c:
			return i
		}
	}
	return -1
}
