package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Every caller of groupSync.sync gets a completed fsync that started after
// its call, also under contention; a removed directory reports its error.
func TestGroupSync(t *testing.T) {
	tests := []struct {
		name    string
		callers int
		remove  bool
	}{
		{name: "ok one caller", callers: 1},
		{name: "ok many callers", callers: 64},
		{name: "fail directory gone", callers: 8, remove: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if tt.remove {
				os.Remove(dir)
			}
			g := newGroupSync(dir, syncDir)
			var wg sync.WaitGroup
			errs := make([]error, tt.callers)
			for i := range tt.callers {
				wg.Go(func() { errs[i] = g.sync() })
			}
			wg.Wait()
			for i, err := range errs {
				if (err != nil) != tt.remove {
					t.Errorf("caller %d: %v", i, err)
				}
			}
			if g.leading || g.next != nil {
				t.Errorf("left leading=%v next=%v", g.leading, g.next)
			}
		})
	}
}

// TestGroupSyncWaitsForLaterSync: a caller that arrives while an fsync is
// running has renamed after that fsync started, so the fsync may miss its
// rename; it must wait for one that starts after its call.
func TestGroupSyncWaitsForLaterSync(t *testing.T) {
	started := make(chan int, 4)
	release := make(chan struct{})
	var mu sync.Mutex
	syncs := 0
	g := newGroupSync("d", func(string) error {
		mu.Lock()
		syncs++
		n := syncs
		mu.Unlock()
		started <- n
		if n == 1 {
			<-release
		}
		return nil
	})
	first := make(chan error, 1)
	go func() { first <- g.sync() }()
	if n := <-started; n != 1 {
		t.Fatalf("fsync %d started first", n)
	}
	// The second caller arrives while the first fsync runs.
	second := make(chan int, 1)
	go func() {
		if err := g.sync(); err != nil {
			t.Error(err)
		}
		mu.Lock()
		second <- syncs
		mu.Unlock()
	}()
	// Wait (on the group's own state, not a clock) until it is queued.
	for {
		g.mu.Lock()
		queued := g.next != nil
		g.mu.Unlock()
		if queued {
			break
		}
		runtime.Gosched()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := <-second; n != 2 {
		t.Fatalf("second caller returned after %d fsyncs; it must wait for one that started after it", n)
	}
	if n := <-started; n != 2 {
		t.Fatalf("fsync %d started second", n)
	}
}

// What a crash can leave in a message file, and what Open makes of it.
func TestParseMessage(t *testing.T) {
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	const id = "0000000000000000aaaaaaaaaa"
	body := "Subject: x\r\n\r\nbody\r\n"
	bodyEnd := int64(len(msgFile(env, body)))
	sealed := fmt.Sprintf(`{"id":%q,"phase":"sealed","packages":[{"n":0,"off":%d,"len":3,"crc":%d,"mail_from":"a@example.test","rcpts":[{"addr":"b@example.test","state":"pending"}]}]}`, id, bodyEnd+frameHeaderLen, crc32.Checksum([]byte("pkg"), castagnoli))
	deferred := `{"id":"` + id + `","phase":"received","attempts":2}`
	other := `{"id":"0000000000000000bbbbbbbbbb","phase":"received"}`
	v3 := func(b []byte) []byte { return append([]byte(msgMagicV3), b[len(msgMagic):]...) }
	withState := len(msgFile(env, body, packageFrame("pkg"), stateBytes(sealed)))
	// A second package of the same bytes that waits for the first (journal policy "wait"), and
	// waits that could hold the message forever.
	pkg0 := sealed[strings.Index(sealed, `{"n":0`):strings.LastIndex(sealed, "]}")]
	waiting := strings.Replace(strings.Replace(pkg0, `"n":0`, `"n":1`, 1), `"rcpts":`, `"wait":{"for":[0],"reason":"r"},"rcpts":`, 1)
	withWait := func(p string) string { return strings.Replace(sealed, pkg0, pkg0+","+p, 1) }
	tests := []struct {
		name      string
		file      []byte
		wantPhase string
		wantEnd   int64 // where the committed part ends
		wantErr   error
	}{
		{name: "ok received", file: msgFile(env, body), wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok received with deferred attempts", file: msgFile(env, body, stateBytes(deferred)), wantPhase: phaseReceived,
			wantEnd: bodyEnd + int64(len(stateBytes(deferred)))},
		{name: "ok sealed", file: msgFile(env, body, packageFrame("pkg"), stateBytes(sealed)), wantPhase: phaseSealed, wantEnd: int64(withState)},
		{name: "ok packages without state are cut off", file: msgFile(env, body, packageFrame("pkg")), wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok torn state is cut off", file: msgFile(env, body, packageFrame("pkg"), stateBytes(sealed)[:40]), wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok state with a bad checksum is cut off", file: func() []byte {
			b := msgFile(env, body, packageFrame("pkg"), stateBytes(sealed))
			b[len(b)-10] ^= 1
			return b
		}(), wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok zeros after the last state are cut off", file: msgFile(env, body, packageFrame("pkg"), stateBytes(sealed), make([]byte, 4096)),
			wantPhase: phaseSealed, wantEnd: int64(withState)},
		{name: "ok unfilled package header is cut off", file: msgFile(env, body, stateBytes(deferred), make([]byte, frameHeaderLen), []byte("pkg")),
			wantPhase: phaseReceived, wantEnd: bodyEnd + int64(len(stateBytes(deferred)))},
		{name: "ok torn package under the last state falls back", file: msgFile(env, body, packageFrame("pkX"), stateBytes(sealed)),
			wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok torn package falls back to the state before", file: func() []byte {
			d := `{"id":"` + id + `","phase":"received","attempts":1}`
			s := strings.Replace(sealed, fmt.Sprintf(`"off":%d`, bodyEnd+frameHeaderLen), fmt.Sprintf(`"off":%d`, bodyEnd+int64(len(stateBytes(d)))+frameHeaderLen), 1)
			return msgFile(env, body, stateBytes(d), packageFrame("pkX"), stateBytes(s))
		}(), wantPhase: phaseReceived, wantEnd: bodyEnd + int64(len(stateBytes(`{"id":"`+id+`","phase":"received","attempts":1}`)))},
		{name: "ok earlier commits are not checked again", file: func() []byte {
			done := strings.Replace(sealed, `"pending"`, `"delivered"`, 1)
			return msgFile(env, body, packageFrame("pkX"), stateBytes(sealed), stateBytes(done))
		}(), wantPhase: phaseSealed, wantEnd: int64(withState + len(stateBytes(strings.Replace(sealed, `"pending"`, `"delivered"`, 1))))},
		{name: "ok a package waits for another", file: msgFile(env, body, packageFrame("pkg"), stateBytes(withWait(waiting))), wantPhase: phaseSealed,
			wantEnd: int64(len(msgFile(env, body, packageFrame("pkg"), stateBytes(withWait(waiting)))))},
		{name: "fail a package waits for itself", file: msgFile(env, body, packageFrame("pkg"), stateBytes(withWait(strings.Replace(waiting, `"for":[0]`, `"for":[1]`, 1)))), wantErr: ErrBadSpoolFile},
		{name: "fail a package waits for a missing one", file: msgFile(env, body, packageFrame("pkg"), stateBytes(withWait(strings.Replace(waiting, `"for":[0]`, `"for":[7]`, 1)))), wantErr: ErrBadSpoolFile},
		{name: "fail a package waits for nothing", file: msgFile(env, body, packageFrame("pkg"), stateBytes(withWait(strings.Replace(waiting, `"for":[0]`, `"for":[]`, 1)))), wantErr: ErrBadSpoolFile},
		{name: "fail format 1", file: []byte(msgMagicV1 + `{"MailFrom":"a@example.test","RcptTo":["b@example.test"]}` + "\n" + body), wantErr: ErrBadSpoolFile},
		{name: "fail body longer than the file", file: msgFile(env, body)[:bodyEnd-1], wantErr: ErrBadSpoolFile},
		{name: "fail garbage state", file: msgFile(env, body, stateBytes("{")), wantErr: ErrBadSpoolFile},
		// Format 4: a recycled file goes on with the frames of the message that used it before,
		// and the first state of another message ends the log.
		{name: "ok another message's state ends the log", file: msgFile(env, body, stateBytes(other), stateBytes(deferred)),
			wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok another message's frames after the last state", file: msgFile(env, body, packageFrame("pkg"), stateBytes(sealed), packageFrame("old"), stateBytes(other)),
			wantPhase: phaseSealed, wantEnd: int64(withState)},
		{name: "ok torn package under the last state, another message's after", file: msgFile(env, body, packageFrame("pkX"), stateBytes(sealed), stateBytes(other)),
			wantPhase: phaseReceived, wantEnd: bodyEnd},
		{name: "ok another message's body bytes after the last state", file: msgFile(env, body, packageFrame("pkg"), stateBytes(sealed), []byte("Subject: old\r\n\r\nold body\r\n")),
			wantPhase: phaseSealed, wantEnd: int64(withState)},
		{name: "fail format 3: state of another message", file: v3(msgFile(env, body, stateBytes(other))), wantErr: ErrBadSpoolFile},
		{name: "fail format 3: another message's frames after the last state", file: v3(msgFile(env, body, packageFrame("pkg"), stateBytes(sealed), stateBytes(other))), wantErr: ErrBadSpoolFile},
		{name: "fail state that does not say whose", file: msgFile(env, body, stateBytes(`{"phase":"received"}`)), wantErr: ErrBadSpoolFile},
		{name: "fail unknown phase", file: msgFile(env, body, stateBytes(`{"id":"`+id+`","phase":"lost"}`)), wantErr: ErrBadSpoolFile},
		{name: "fail package after its state", file: msgFile(env, body, stateBytes(sealed)), wantErr: ErrBadSpoolFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, end, err := parseMessage(id, bytes.NewReader(tt.file), int64(len(tt.file)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("parseMessage: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if rec.Phase != tt.wantPhase || end != tt.wantEnd {
				t.Errorf("phase %q, end %d; want %q, %d", rec.Phase, end, tt.wantPhase, tt.wantEnd)
			}
			if rec.Envelope.MailFrom != env.MailFrom || string(tt.file[rec.file.body:rec.file.body+rec.file.bodyLen]) != body {
				t.Errorf("envelope %+v, body %q", rec.Envelope, tt.file[rec.file.body:rec.file.body+rec.file.bodyLen])
			}
			if rec.Phase == phaseSealed {
				p := rec.Packages[0]
				if got := string(tt.file[p.Off : p.Off+p.Len]); got != "pkg" && got != "pkX" {
					t.Errorf("package bytes %q", got)
				}
			}
		})
	}
}

// A finished file is kept and overwritten by the next message, which must
// then read as that message alone, however long the old one was.
func TestRecycle(t *testing.T) {
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	tests := []struct {
		name          string
		keepFree      uint64
		first, second int // body sizes
		wantRecycled  bool
	}{
		{name: "ok longer file reused", first: 20 << 10, second: 100, wantRecycled: true},
		{name: "ok shorter file reused", first: 100, second: 20 << 10, wantRecycled: true},
		{name: "ok large file deleted", first: maxFreeSize + 1, second: 100},
		{name: "ok little space left: deleted", keepFree: 1 << 62, first: 100, second: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, err := openSpool(t.TempDir(), 0)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.unlock()
			if tt.keepFree != 0 {
				sp.keepFree = tt.keepFree
			}
			ctx := context.Background()
			old := newID(time.Now())
			fs, err := sp.writeMessage(ctx, old, env, strings.NewReader(strings.Repeat("o", tt.first)), 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := sp.remove(&record{ID: old, file: fs}); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(sp.msgPath(old)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("finished message still in msg/: %v", err)
			}
			tmp, _ := os.ReadDir(sp.tmp)
			if (len(tmp) == 1) != tt.wantRecycled || len(sp.free) != len(tmp) {
				t.Fatalf("%d files in tmp/, %d kept; want recycled %v", len(tmp), len(sp.free), tt.wantRecycled)
			}
			id := newID(time.Now())
			body := strings.Repeat("n", tt.second)
			if _, err := sp.writeMessage(ctx, id, env, strings.NewReader(body), 0); err != nil {
				t.Fatal(err)
			}
			if tmp, _ := os.ReadDir(sp.tmp); len(tmp) != 0 || len(sp.free) != 0 {
				t.Errorf("%d files left in tmp/, %d kept, after reuse", len(tmp), len(sp.free))
			}
			data, err := os.ReadFile(sp.msgPath(id))
			if err != nil {
				t.Fatal(err)
			}
			// A reused file keeps its length (format 4): the new message, then what is left of
			// the old one, which the file's log does not reach.
			want := msgFile(env, body)
			if !bytes.HasPrefix(data, want) || (tt.wantRecycled && len(data) != max(len(want), len(msgFile(env, strings.Repeat("o", tt.first))))) {
				t.Errorf("reused file has %d bytes, want %q first; ends %q", len(data), want, data[max(0, len(data)-20):])
			}
			rec, end, err := parseMessage(id, bytes.NewReader(data), int64(len(data)))
			if err != nil || rec.Phase != phaseReceived || end != int64(len(want)) {
				t.Errorf("reused file reads as %+v ending at %d (%v), want the new message received, ending at %d", rec, end, err, len(want))
			}
		})
	}
}

// A crash can cut a message file at any byte: each cut must load as the
// last commit that ended before it, never as a later one and never as an
// error.
func TestCommitCutAnywhere(t *testing.T) {
	sp, err := openSpool(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.unlock()
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test", "c@example.test"}}
	id := newID(time.Now())
	fs, err := sp.writeMessage(context.Background(), id, env, strings.NewReader("Subject: x\r\n\r\nbody\r\n"), 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := &record{ID: id, Phase: phaseReceived, Envelope: env, file: fs}
	type commit struct {
		end      int64
		phase    string
		attempts int
		rcpt     string // state of the first package's recipient
	}
	commits := []commit{{end: fs.end, phase: phaseReceived}}
	step := func(edit func()) {
		edit()
		if err := sp.commit(rec); err != nil {
			t.Fatal(err)
		}
		c := commit{end: fs.end, phase: rec.Phase, attempts: rec.Attempts}
		if len(rec.Packages) > 0 {
			c.rcpt = rec.Packages[0].Rcpts[0].State
		}
		commits = append(commits, c)
	}
	step(func() { rec.Attempts = 1 }) // sealing deferred
	step(func() {
		rec.Phase = phaseSealed
		for i, to := range env.RcptTo {
			p := &pkgRecord{N: i, MailFrom: env.MailFrom, Rcpts: []*rcptRecord{{Addr: to, State: rcptPending}}}
			rec.Packages = append(rec.Packages, p)
			rec.unwritten = append(rec.unwritten, newPackage{rec: p, body: strings.NewReader(strings.Repeat(to, 100))})
		}
	})
	step(func() { rec.Packages[0].Rcpts[0].State = rcptDelivered })
	step(func() {
		p := &pkgRecord{N: 2, DSN: true, Rcpts: []*rcptRecord{{Addr: env.MailFrom, State: rcptPending}}}
		rec.Packages = append(rec.Packages, p)
		rec.unwritten = append(rec.unwritten, newPackage{rec: p, body: strings.NewReader("a DSN")})
	})
	data, err := os.ReadFile(sp.msgPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != fs.end {
		t.Fatalf("file has %d bytes, the last commit ends at %d", len(data), fs.end)
	}
	for cut := commits[0].end; cut <= int64(len(data)); cut++ {
		got, end, err := parseMessage(id, bytes.NewReader(data[:cut]), cut)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		want := commits[0]
		for _, c := range commits {
			if c.end <= cut {
				want = c
			}
		}
		rcpt := ""
		if len(got.Packages) > 0 {
			rcpt = got.Packages[0].Rcpts[0].State
		}
		if have := (commit{end: end, phase: got.Phase, attempts: got.Attempts, rcpt: rcpt}); have != want {
			t.Fatalf("cut at %d: loaded %+v, want %+v", cut, have, want)
		}
		for _, p := range got.Packages {
			if p.Off+p.Len > end {
				t.Fatalf("cut at %d: package %d ends at %d, after the commit's end %d", cut, p.N, p.Off+p.Len, end)
			}
		}
	}
}
