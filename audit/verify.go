package audit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Kind is what Verify found wrong.
type Kind string

// Problem kinds.
const (
	Changed      Kind = "changed"       // a record's bytes are not those the next record chained
	Removed      Kind = "removed"       // records missing from the sequence
	Reordered    Kind = "reordered"     // a record out of its place
	Added        Kind = "added"         // records after a file's seal
	MissingFile  Kind = "missing-file"  // a file of the sequence not given or not there
	BadSignature Kind = "bad-signature" // a seal whose signature does not verify
	Untrusted    Kind = "untrusted-key" // a seal signed by a key not among the trusted ones
	Unsigned     Kind = "unsigned"      // a seal without a signature, when signatures are required
)

// Problem is the first thing Verify found wrong. File and Line (1-based) locate the record
// named; Seq is its sequence number when known.
type Problem struct {
	Kind    Kind   `json:"kind"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Seq     uint64 `json:"seq,omitempty"`
	Message string `json:"message"`
}

func (p *Problem) Error() string {
	loc := ""
	if p.File != "" {
		loc = fmt.Sprintf("%s:%d: ", p.File, p.Line)
	}
	return loc + string(p.Kind) + ": " + p.Message
}

// Report is what Verify read.
type Report struct {
	Files    int      `json:"files"`
	Records  int      `json:"records"`
	FirstSeq uint64   `json:"first_seq"`
	LastSeq  uint64   `json:"last_seq"`
	Sealed   int      `json:"sealed"`          // files that end with their seal
	Signed   int      `json:"signed"`          // seals whose signature verified
	Keys     []string `json:"keys,omitempty"`  // SHA-256 of each signing key's PKIX encoding, hex
	Notes    []string `json:"notes,omitempty"` // what was not checked, and why
	Problem  *Problem `json:"problem,omitempty"`
}

// VerifyOptions say what a seal must have.
type VerifyOptions struct {
	// Trusted keys: when not empty, every seal must be signed by one of them. Without them a
	// signature is checked against the key the seal carries, which shows the file was not changed
	// since it was sealed by that key, not who holds the key.
	Trusted []crypto.PublicKey
	// RequireSigned makes an unsigned seal a problem.
	RequireSigned bool
}

type entry struct {
	path string
	line int // 1-based
	raw  []byte
	rec  *Record // nil when the line does not parse
	file uint64  // index of the file it is in
	last bool    // last line of its file
}

// Verify reads the trail files at paths (in any order: they are put in order by the index their
// open record names) and returns what it found; Report.Problem is the first problem in trail
// order, nil when there is none. The error is for files that cannot be read at all.
func Verify(paths []string, opts VerifyOptions) (*Report, error) {
	type file struct {
		path  string
		index uint64
		lines [][]byte
	}
	rep := &Report{}
	var files []file
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		lines, err := readLines(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("audit: read %s: %w", p, err)
		}
		var first Record
		if len(lines) == 0 || json.Unmarshal(lines[0], &first) != nil || first.Type != TypeOpen || first.File == 0 {
			// Without its open record the file's place is its name, if that is a trail name.
			n, ok := fileRE(filepath.Base(p))
			if !ok {
				rep.Problem = &Problem{Kind: Changed, File: p, Line: 1, Message: "the file does not start with an open record and its name is not audit-NNNNNN.log"}
				return rep, nil
			}
			first.File = n
		}
		files = append(files, file{p, first.File, lines})
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].index < files[j].index })
	var all []entry
	for i, f := range files {
		if i > 0 && f.index == files[i-1].index {
			rep.Problem = &Problem{Kind: Changed, File: f.path, Line: 1, Message: fmt.Sprintf("file index %d is also that of %s", f.index, files[i-1].path)}
			return rep, nil
		}
		for j, raw := range f.lines {
			e := entry{path: f.path, line: j + 1, raw: raw, file: f.index, last: j == len(f.lines)-1}
			var r Record
			if json.Unmarshal(raw, &r) == nil {
				e.rec = &r
			}
			all = append(all, e)
		}
	}
	rep.Files = len(files)
	rep.Records = len(all)
	if len(all) == 0 {
		return rep, nil
	}
	if files[0].index > 1 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the trail starts at file %d: files before it were not given, so its first record's link to them is not checked", files[0].index))
	}
	bySeq := map[uint64]int{}
	for i, e := range all {
		if e.rec != nil {
			if _, dup := bySeq[e.rec.Seq]; !dup {
				bySeq[e.rec.Seq] = i
			}
		}
	}
	keys := map[string]bool{}
	var prev *entry
	var expected uint64
	for i := range all {
		e := &all[i]
		p := walk(rep, opts, i, prev, &expected, all, bySeq, keys)
		if p != nil {
			rep.Problem = p
			break
		}
		prev = e
	}
	for k := range keys {
		rep.Keys = append(rep.Keys, k)
	}
	sort.Strings(rep.Keys)
	if rep.Problem == nil {
		lastE := all[len(all)-1]
		if lastE.rec.Type != TypeSeal {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s is not sealed (still being written): its last record is protected only once a record or the seal follows it", lastE.path))
		}
	}
	return rep, nil
}

// walk checks one entry against the one before it.
func walk(rep *Report, opts VerifyOptions, i int, prev *entry, expected *uint64, all []entry, bySeq map[uint64]int, keys map[string]bool) *Problem {
	e := &all[i]
	at := func(k Kind, seq uint64, format string, args ...any) *Problem {
		return &Problem{Kind: k, File: e.path, Line: e.line, Seq: seq, Message: fmt.Sprintf(format, args...)}
	}
	if e.rec == nil {
		return at(Changed, 0, "the record does not parse")
	}
	r := e.rec
	newFile := e.line == 1
	if prev == nil {
		*expected = r.Seq
		rep.FirstSeq = r.Seq
		if e.file == 1 && (r.Seq != 1 || r.Prev != "") {
			return at(Changed, r.Seq, "the first record of the trail must have seq 1 and no prev")
		}
	}
	if newFile && prev != nil {
		if prev.rec.Type != TypeSeal {
			return &Problem{Kind: Removed, File: prev.path, Line: prev.line, Seq: prev.rec.Seq,
				Message: fmt.Sprintf("the file ends without its seal after seq %d: the records after it were removed", prev.rec.Seq)}
		}
		if e.file != prev.file+1 {
			missing := FileName(prev.file + 1)
			if e.file > prev.file+2 {
				missing = fmt.Sprintf("%s to %s", missing, FileName(e.file-1))
			}
			return &Problem{Kind: MissingFile, File: e.path, Line: 1, Seq: r.Seq,
				Message: fmt.Sprintf("%s missing: the trail goes from file %d (%s) to file %d", missing, prev.file, prev.path, e.file)}
		}
	}
	if newFile && (r.Type != TypeOpen || r.File != e.file) {
		return at(Removed, r.Seq, "the file's open record is not its first line")
	}
	if !newFile && r.Type == TypeOpen {
		return at(Reordered, r.Seq, "an open record inside the file")
	}
	if prev != nil && prev.rec.Type == TypeSeal && !newFile {
		return at(Added, r.Seq, "a record after the seal of file %d", prev.file)
	}
	if r.Seq != *expected {
		if i+1 < len(all) && all[i+1].rec != nil && all[i+1].rec.Seq == *expected+1 && all[i+1].line != 1 {
			// The records around it are in sequence: its own seq field was changed.
			return at(Changed, *expected, "the record's seq reads %d where seq %d belongs", r.Seq, *expected)
		}
		if r.Seq < *expected {
			return at(Reordered, r.Seq, "seq %d comes after seq %d", r.Seq, *expected-1)
		}
		if j, ok := bySeq[*expected]; ok {
			o := all[j]
			return &Problem{Kind: Reordered, File: o.path, Line: o.line, Seq: *expected,
				Message: fmt.Sprintf("seq %d is out of place: seq %d (%s:%d) is where it belongs", *expected, r.Seq, e.path, e.line)}
		}
		what := fmt.Sprintf("seq %d", *expected)
		if r.Seq > *expected+1 {
			what = fmt.Sprintf("seq %d to %d", *expected, r.Seq-1)
		}
		return at(Removed, *expected, "%s removed before this record (seq %d)", what, r.Seq)
	}
	if prev != nil {
		h := lineHash(prev.raw)
		if r.Prev != h {
			if r.Type == TypeSeal && r.Head == h {
				return at(Changed, r.Seq, "the seal's prev field was changed")
			}
			return &Problem{Kind: Changed, File: prev.path, Line: prev.line, Seq: prev.rec.Seq,
				Message: fmt.Sprintf("seq %d was changed: seq %d (%s:%d) chains to a different hash", prev.rec.Seq, r.Seq, e.path, e.line)}
		}
	}
	if r.Type == TypeSeal {
		if r.File != e.file || r.Head != r.Prev {
			return at(Changed, r.Seq, "the seal names file %d and head %.16s, not this file and the hash before it", r.File, r.Head)
		}
		if p := checkSeal(opts, r, keys); p != "" {
			k := BadSignature
			switch p {
			case string(Unsigned):
				k, p = Unsigned, "the seal is not signed"
			case string(Untrusted):
				k, p = Untrusted, "the seal is signed by a key not among the trusted ones"
			}
			return at(k, r.Seq, "%s", p)
		}
		if r.Signature != "" {
			rep.Signed++
		}
		rep.Sealed++
	}
	rep.LastSeq = r.Seq
	*expected = r.Seq + 1
	return nil
}

// checkSeal verifies a seal's signature; "" when it holds (or is absent and not required).
func checkSeal(opts VerifyOptions, r *Record, keys map[string]bool) string {
	if r.Signature == "" {
		if opts.RequireSigned || len(opts.Trusted) > 0 {
			return string(Unsigned)
		}
		return ""
	}
	der, err := base64.StdEncoding.DecodeString(r.Key)
	if err != nil {
		return "the seal's key does not decode"
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return "the seal's key does not parse: " + err.Error()
	}
	sig, err := base64.StdEncoding.DecodeString(r.Signature)
	if err != nil {
		return "the signature does not decode"
	}
	if err := VerifySignature(pub, Statement(r.File, r.Seq, r.Head), sig); err != nil {
		return "the signature does not verify: " + err.Error()
	}
	if len(opts.Trusted) > 0 {
		ok := false
		for _, t := range opts.Trusted {
			if e, can := t.(interface{ Equal(crypto.PublicKey) bool }); can && e.Equal(pub) {
				ok = true
			}
		}
		if !ok {
			return string(Untrusted)
		}
	}
	fp := sha256.Sum256(der)
	keys[hex.EncodeToString(fp[:])] = true
	return ""
}

// VerifySignature checks sig over statement by pub, as the seal record makes it.
func VerifySignature(pub crypto.PublicKey, statement, sig []byte) error {
	d := sha256.Sum256(statement)
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, crypto.SHA256, d[:], sig)
	case *ecdsa.PublicKey:
		if !ecdsa.VerifyASN1(k, d[:], sig) {
			return errors.New("ECDSA signature invalid")
		}
		return nil
	case ed25519.PublicKey:
		if !ed25519.Verify(k, statement, sig) {
			return errors.New("Ed25519 signature invalid")
		}
		return nil
	}
	return fmt.Errorf("unsupported key type %T", pub)
}
