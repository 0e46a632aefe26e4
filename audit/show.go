package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Show prints the records of the files at paths, in the order given: with asJSON each record as
// the JSON line it is (one a line), otherwise one readable line per record. A line that does not
// parse is printed as "unreadable" with its place; Show does not verify (Verify does).
func Show(w io.Writer, paths []string, asJSON bool) error {
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		lines, err := readLines(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", p, err)
		}
		for i, raw := range lines {
			var r Record
			if err := json.Unmarshal(raw, &r); err != nil {
				fmt.Fprintf(w, "%s:%d: unreadable record: %v\n", p, i+1, err)
				continue
			}
			if asJSON {
				// Re-encoded, so that what is printed is one JSON value a line whatever the file held.
				b, _ := json.Marshal(&r)
				fmt.Fprintf(w, "%s\n", b)
				continue
			}
			fmt.Fprintln(w, Format(&r))
		}
	}
	return nil
}

// Format is one record as a readable line: seq, time, type and the fields it has.
func Format(r *Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%6d %s %-8s", r.Seq, r.Time.UTC().Format(time.RFC3339), r.Type)
	kv := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, quote(v))
		}
	}
	if r.File != 0 {
		kv("file", fmt.Sprint(r.File))
	}
	kv("message", r.Message)
	if r.Package != nil {
		kv("package", fmt.Sprint(*r.Package))
	}
	kv("from", r.From)
	kv("auth", r.AuthUser)
	if len(r.Recipients) > 0 {
		kv("rcpt", strings.Join(r.Recipients, ","))
	}
	if r.Size != 0 {
		kv("size", fmt.Sprint(r.Size))
	}
	kv("mode", r.Mode)
	kv("profile", r.Profile)
	if len(r.RecipientInfos) > 0 {
		kv("rids", strings.Join(r.RecipientInfos, ","))
	}
	kv("recipient", r.Recipient)
	kv("outcome", r.Outcome)
	kv("reply", r.Reply)
	kv("digest", r.Digest)
	kv("head", r.Head)
	switch {
	case r.Type == TypeSeal && r.Signature != "":
		b.WriteString(" signed")
	case r.Type == TypeSeal:
		b.WriteString(" unsigned")
	}
	return b.String()
}

// quote leaves plain values as they are and quotes those with spaces, quotes or control
// characters (an address or a reply from outside must not forge a line).
func quote(s string) string {
	for _, c := range s {
		if c <= ' ' || c == '"' || c == 0x7f || c == '\\' {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}
