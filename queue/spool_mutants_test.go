package queue

// Tests that kill mutants scripts/mutation.sh found living in queue/spool.go (docs/testing.md,
// "Mutation testing").

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func inodeOf(t *testing.T, name string) uint64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// TestRecycleReusesFile: the next message is written into the kept file itself, not into a new
// one after the kept file was deleted.
func TestRecycleReusesFile(t *testing.T) {
	sp := newTestSpool(t)
	if err := sp.remove(spoolMessage(t, sp, "old")); err != nil {
		t.Fatal(err)
	}
	if len(sp.free) != 1 {
		t.Fatalf("%d files kept, want 1", len(sp.free))
	}
	kept := inodeOf(t, sp.free[0])
	id := spoolMessage(t, sp, "new").ID
	if got := inodeOf(t, sp.msgPath(id)); got != kept {
		t.Fatalf("new message in inode %d, the kept file was %d", got, kept)
	}
}

// TestRecycleBounds: at most maxFree files are kept, and a file of exactly maxFreeSize bytes is
// kept while one byte more is deleted.
func TestRecycleBounds(t *testing.T) {
	sp := newTestSpool(t)
	write := func(body string) *record { return spoolMessage(t, sp, body) }
	// The file size is the body's plus a fixed overhead.
	probe := write("x")
	size := func(n int) string { return strings.Repeat("x", n+1-int(probe.file.end)) }
	recs := []*record{write(size(maxFreeSize)), write(size(maxFreeSize + 1))}
	if recs[0].file.end != maxFreeSize || recs[1].file.end != maxFreeSize+1 {
		t.Fatalf("file sizes %d, %d; want %d and one more", recs[0].file.end, recs[1].file.end, maxFreeSize)
	}
	for _, rec := range recs {
		if err := sp.remove(rec); err != nil {
			t.Fatal(err)
		}
	}
	if len(sp.free) != 1 || !strings.HasSuffix(sp.free[0], recs[0].ID) {
		t.Fatalf("kept %q, want only %s", sp.free, recs[0].ID)
	}
	sp.dropFree()
	for range maxFree + 2 {
		recs = append(recs, write("x"))
	}
	for _, rec := range recs[2:] {
		if err := sp.remove(rec); err != nil {
			t.Fatal(err)
		}
	}
	tmp, err := os.ReadDir(sp.tmp)
	if err != nil {
		t.Fatal(err)
	}
	if len(sp.free) != maxFree || len(tmp) != maxFree {
		t.Fatalf("%d files kept, %d in tmp/; want %d", len(sp.free), len(tmp), maxFree)
	}

}

// TestOpenEmptyV1Dirs: empty state/ and pkg/ directories of spool format 1 hold no mail, so
// the spool opens; a file in one of them refuses the start.
func TestOpenEmptyV1Dirs(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"state", "pkg"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := openSpool(dir, 0)
	if err != nil {
		t.Fatalf("openSpool with empty format 1 directories: %v", err)
	}
	sp.unlock()
	if err := os.WriteFile(filepath.Join(dir, "pkg", "x"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sp, err := openSpool(dir, 0); !errors.Is(err, ErrBadSpoolFile) {
		if err == nil {
			sp.unlock()
		}
		t.Fatalf("openSpool with a file in pkg/: %v, want %v", err, ErrBadSpoolFile)
	}
}

// TestLoadFormats: a message file of format 2 or 3 loads like format 4, one of format 1 is refused
// as format 1 (the error says how to drain it), and one of an unknown format is refused.
func TestLoadFormats(t *testing.T) {
	sp := newTestSpool(t)
	spooled := spoolMessage(t, sp, "body")
	id, env := spooled.ID, spooled.Envelope
	data, err := os.ReadFile(sp.msgPath(id))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		magic  string
		v1, ok bool
	}{
		{magic: msgMagic, ok: true},
		{magic: msgMagicV3, ok: true},
		{magic: msgMagicV2, ok: true},
		{magic: msgMagicV1, v1: true},
		{magic: "appliance-spool 5\n"},
	} {
		if len(tt.magic) != len(msgMagic) {
			t.Fatalf("magic %q has another length", tt.magic)
		}
		if err := os.WriteFile(sp.msgPath(id), append([]byte(tt.magic), data[len(msgMagic):]...), 0o600); err != nil {
			t.Fatal(err)
		}
		rec, _, err := sp.load(id)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%q: %v", tt.magic, err)
		case tt.ok && (rec.Envelope.MailFrom != env.MailFrom || len(rec.Envelope.RcptTo) != 1):
			t.Errorf("%q: envelope %+v", tt.magic, rec.Envelope)
		case !tt.ok && !errors.Is(err, ErrBadSpoolFile):
			t.Errorf("%q: %v, want %v", tt.magic, err, ErrBadSpoolFile)
		case !tt.ok && errors.Is(err, errFormatV1) != tt.v1:
			t.Errorf("%q: %v; format 1 named: %v, want %v", tt.magic, err, !tt.v1, tt.v1)
		}
	}
}

// TestRecoverLogsCut: recovery cuts an unfinished tail off a message file and logs how many
// bytes it removed; a whole file is not logged.
func TestRecoverLogsCut(t *testing.T) {
	sp := newTestSpool(t)
	rec := spoolMessage(t, sp, "body")
	id, fs := rec.ID, rec.file
	var logs bytes.Buffer
	if recs, err := sp.recover(slog.New(slog.NewTextHandler(&logs, nil))); err != nil || len(recs) != 1 {
		t.Fatalf("recover: %d records, %v", len(recs), err)
	}
	if strings.Contains(logs.String(), "cut spool file") {
		t.Errorf("a whole file logged as cut: %s", logs.String())
	}
	f, err := os.OpenFile(sp.msgPath(id), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("torn commit"))
	f.Close()
	logs.Reset()
	if recs, err := sp.recover(slog.New(slog.NewTextHandler(&logs, nil))); err != nil || len(recs) != 1 {
		t.Fatalf("recover: %d records, %v", len(recs), err)
	}
	if !strings.Contains(logs.String(), "cut spool file after its last commit") || !strings.Contains(logs.String(), "bytes=11") {
		t.Errorf("cut of 11 bytes not logged: %s", logs.String())
	}
	if fi, err := os.Stat(sp.msgPath(id)); err != nil || fi.Size() != fs.end {
		t.Errorf("file not cut back to %d bytes: %v, %v", fs.end, fi.Size(), err)
	}
}

// TestDecodeStateBounds: a state's packages and shared parts must lie between the first frame's
// payload and the state frame itself; each bound is taken exactly and refused one byte past it.
func TestDecodeStateBounds(t *testing.T) {
	const id = "0123456789abcdef0123456789"
	const framesAt, at = 1000, 2000
	first := int64(framesAt + frameHeaderLen)
	tests := []struct {
		name     string
		off, len int64
		shared   *segment
		ok       bool
	}{
		{name: "ok first byte to the state", off: first, len: at - first, ok: true},
		{name: "ok empty package", off: first, len: 0, ok: true},
		{name: "fail before the first payload", off: first - 1, len: 10},
		{name: "fail into the state frame", off: first, len: at - first + 1},
		{name: "fail negative length", off: first + 10, len: -1},
		{name: "ok shared part up to the state", off: first, len: 10, shared: &segment{Off: first + 10, Len: at - first - 10}, ok: true},
		{name: "ok empty shared part", off: first, len: 10, shared: &segment{Off: first, Len: 0}, ok: true},
		{name: "fail shared part before the first payload", off: first, len: 10, shared: &segment{Off: first - 1, Len: 5}},
		{name: "fail shared part into the state frame", off: first, len: 10, shared: &segment{Off: first + 10, Len: at - first - 9}},
		{name: "fail shared part of negative length", off: first, len: 10, shared: &segment{Off: first + 20, Len: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := record{ID: id, Phase: phaseSealed, Packages: []*pkgRecord{{Off: tt.off, Len: tt.len, Shared: tt.shared,
				Rcpts: []*rcptRecord{{Addr: "b@example.test", State: rcptPending}}}}}
			payload, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			_, err = decodeState(id, Envelope{}, stateFrame{payload: payload, at: at, end: at + 100}, framesAt)
			if tt.ok && err != nil {
				t.Fatalf("decodeState: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrBadSpoolFile) {
				t.Fatalf("decodeState = %v, want %v", err, ErrBadSpoolFile)
			}
		})
	}
}

// TestParseStateNamesBody: a state frame whose package lies inside the message body (a corrupt
// or foreign file) is refused: packages start after the body.
func TestParseStateNamesBody(t *testing.T) {
	sp := newTestSpool(t)
	spooled := spoolMessage(t, sp, strings.Repeat("x", 100))
	id, fs := spooled.ID, spooled.file
	data, err := os.ReadFile(sp.msgPath(id))
	if err != nil {
		t.Fatal(err)
	}
	off := fs.body + 20
	rec := record{ID: id, Phase: phaseSealed, Packages: []*pkgRecord{{Off: off, Len: 10,
		CRC: crc32.Checksum(data[off:off+10], castagnoli), Rcpts: []*rcptRecord{{Addr: "b@example.test", State: rcptPending}}}}}
	payload, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	data = append(data[:fs.end:fs.end], frameHeader(kindState, int64(len(payload)))...)
	data = append(data, payload...)
	data = binary.BigEndian.AppendUint32(data, crc32.Checksum(payload, castagnoli))
	if _, _, err := parseMessage(id, bytes.NewReader(data), int64(len(data))); !errors.Is(err, ErrBadSpoolFile) {
		t.Fatalf("parseMessage = %v, want %v", err, ErrBadSpoolFile)
	}
}
