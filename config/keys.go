package config

import (
	"reflect"
	"sort"
	"strings"
)

// Table is one table of the file, in the order [Config] declares it: "hsm", "directory.ldap",
// or an array of tables such as "sender" ([[sender]]) with Array set.
type Table struct {
	Name  string
	Array bool
	Type  reflect.Type // the struct holding its keys
}

// Key is one key of the file: Name in Table, declared as Field of the struct Owner (an
// embedded struct's keys sit in the table of the struct embedding it), with Default its value
// in [Defaults] (the zero value inside arrays of tables).
type Key struct {
	Table   Table
	Name    string
	Owner   reflect.Type
	Field   reflect.StructField
	Default reflect.Value
}

// Path is the dotted key, "smtp.listen" or "sender.address".
func (k Key) Path() string { return k.Table.Name + "." + k.Name }

// Schema lists every table and key of the file, walked from the toml tags of [Config]: what the
// file accepts is what the struct declares, so the reference, the example file and the "did you
// mean" suggestions cannot name a key the decoder does not know.
func Schema() ([]Table, []Key) {
	var tables []Table
	var keys []Key
	var walk func(t reflect.Type, v reflect.Value, table Table)
	walk = func(t reflect.Type, v reflect.Value, table Table) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			fv := v.Field(i)
			if f.Anonymous && tag == "" {
				walk(f.Type, fv, table)
				continue
			}
			if tag == "" || tag == "-" {
				continue
			}
			ft, array := f.Type, false
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				ft, array = ft.Elem(), true
				fv = reflect.New(ft).Elem()
			}
			_, custom := reflect.New(ft).Interface().(interface{ UnmarshalTOML(any) error })
			if ft.Kind() != reflect.Struct || custom {
				keys = append(keys, Key{Table: table, Name: tag, Owner: t, Field: f, Default: fv})
				continue
			}
			sub := Table{Name: tag, Array: array, Type: ft}
			if table.Name != "" {
				sub.Name = table.Name + "." + tag
			}
			tables = append(tables, sub)
			walk(ft, fv, sub)
		}
	}
	walk(reflect.TypeOf(Config{}), reflect.ValueOf(Defaults()).Elem(), Table{})
	return tables, keys
}

// suggest returns what an unknown dotted key (as toml reports it, without array indexes) was
// probably meant to be: a key of the same table a typo or two away, the same name in another
// table, or a table of that spelling. "" when nothing is close.
func suggest(unknown string) string {
	tables, keys := Schema()
	table, name := "", unknown
	if i := strings.LastIndexByte(unknown, '.'); i >= 0 {
		table, name = unknown[:i], unknown[i+1:]
	}
	type cand struct {
		text string
		dist int
	}
	var cands []cand
	limit := max(1, len(name)/3)
	for _, k := range keys {
		switch d := editDistance(name, k.Name); {
		case k.Table.Name == table && d <= limit:
			cands = append(cands, cand{k.Name, d})
		case k.Table.Name != table && k.Name == name:
			cands = append(cands, cand{k.Name + " in " + tableHeader(k.Table), limit + 1})
		}
	}
	for _, t := range tables {
		if d := editDistance(unknown, t.Name); d <= max(1, len(unknown)/3) {
			cands = append(cands, cand{tableHeader(t), d})
		}
	}
	if len(cands) == 0 {
		return ""
	}
	sort.SliceStable(cands, func(i, j int) bool { return cands[i].dist < cands[j].dist })
	return cands[0].text
}

func tableHeader(t Table) string {
	if t.Array {
		return "[[" + t.Name + "]]"
	}
	return "[" + t.Name + "]"
}

// editDistance is the Levenshtein distance of a and b, with an adjacent swap counting one.
func editDistance(a, b string) int {
	a, b = strings.ToLower(a), strings.ToLower(b)
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
