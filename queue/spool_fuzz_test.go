package queue

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"strings"
	"testing"
	"time"
)

// msgFile is a message file as Accept writes it, with frames after the body.
func msgFile(env Envelope, body string, frames ...[]byte) []byte {
	hdr, _ := json.Marshal(env)
	b := fmt.Appendf(nil, "%s%016x\n%s\n%s", msgMagic, len(body), hdr, body)
	for _, f := range frames {
		b = append(b, f...)
	}
	return b
}

func stateBytes(payload string) []byte {
	b := append(frameHeader(kindState, int64(len(payload))), payload...)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum([]byte(payload), castagnoli))
}

func packageFrame(payload string) []byte {
	return append(frameHeader(kindPackage, int64(len(payload))), payload...)
}

func FuzzReadHeader(f *testing.F) {
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	f.Add(msgFile(env, "body\r\n"))
	f.Add([]byte(msgMagic + "0000000000000000\n{}\n"))
	f.Add([]byte(msgMagic + "000000000000000g\n" + `{"RcptTo":["b"]}` + "\n"))
	f.Add([]byte(msgMagicV1 + `{"RcptTo":["b"]}` + "\n"))
	f.Add([]byte("From: x\r\n\r\nbody"))
	f.Add([]byte(msgMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		env, bodyAt, bodyLen, _, err := readHeader(br)
		if err != nil {
			return
		}
		if len(env.RcptTo) == 0 {
			t.Fatal("accepted an envelope without recipients")
		}
		if bodyLen < 0 || bodyAt > int64(len(data)) {
			t.Fatalf("body at %d, %d bytes, in %d", bodyAt, bodyLen, len(data))
		}
		// What follows the header is the body, byte for byte.
		rest, _ := br.Peek(br.Buffered())
		if !bytes.Equal(data[bodyAt:], rest) {
			t.Fatal("body does not start right after the header")
		}
	})
}

// A message file after a crash can end anywhere, in anything. Loading it
// must not panic, must find only states whose checksum holds, must never
// point a package outside the committed part, and what it keeps must load
// again unchanged once the tail is cut off.
func FuzzParseMessage(f *testing.F) {
	env := Envelope{MailFrom: "a@example.test", RcptTo: []string{"b@example.test"}}
	const id = "0000000000000000aaaaaaaaaa"
	body := "Subject: x\r\n\r\nbody\r\n"
	pkgAt := int64(len(msgFile(env, body))) + frameHeaderLen
	sealed := fmt.Sprintf(`{"id":%q,"phase":"sealed","packages":[{"n":0,"off":%d,"len":3,"crc":%d,"mail_from":"a@example.test","rcpts":[{"addr":"b@example.test","state":"pending"}]}]}`, id, pkgAt, crc32.Checksum([]byte("pkg"), castagnoli))
	f.Add(msgFile(env, body))
	f.Add(msgFile(env, body, packageFrame("pkg")))
	f.Add(msgFile(env, body, packageFrame("pkg"), stateBytes(sealed)))
	f.Add(msgFile(env, body, packageFrame("pkg"), stateBytes(sealed)[:20]))
	f.Add(msgFile(env, body, stateBytes(`{"id":"`+id+`","phase":"received","attempts":1}`), make([]byte, 40)))
	f.Add(msgFile(env, body, stateBytes(`{"id":"`+id+`","phase":"sealed","packages":[{"off":-1,"len":99}]}`)))
	f.Add(msgFile(env, body, stateBytes(`{`)))
	// A package that waits for another (journal policy "wait"), and one beside a null package.
	waits := sealed[:len(sealed)-2] + fmt.Sprintf(`,{"n":1,"off":%d,"len":3,"crc":%d,"wait":{"for":[0]},"mail_from":"a@example.test","rcpts":[]}]}`, pkgAt, crc32.Checksum([]byte("pkg"), castagnoli))
	f.Add(msgFile(env, body, packageFrame("pkg"), stateBytes(waits)))
	f.Add(msgFile(env, body, packageFrame("pkg"), stateBytes(strings.Replace(waits, `"for":[0]}`, `"for":[2]}`, 1)[:len(waits)-2]+`,null]}`)))
	// A package whose head is "pkg" and whose shared part ("shared!") is a frame before it.
	shAt := int64(len(msgFile(env, body))) + frameHeaderLen
	headAt := shAt + int64(len("shared!")) + frameHeaderLen
	withShared := fmt.Sprintf(`{"id":%q,"phase":"sealed","packages":[{"n":0,"off":%d,"len":3,"crc":%d,"shared":{"off":%d,"len":7,"crc":%d},"mail_from":"a@example.test","rcpts":[{"addr":"b@example.test","state":"pending"}]}]}`,
		id, headAt, crc32.Checksum([]byte("pkg"), castagnoli), shAt, crc32.Checksum([]byte("shared!"), castagnoli))
	f.Add(msgFile(env, body, packageFrame("shared!"), packageFrame("pkg"), stateBytes(withShared)))
	// Format 4: what the message that used a kept file before left after the log, and such a
	// message's state where the log begins.
	other := `{"id":"0000000000000000bbbbbbbbbb","phase":"sealed","packages":[]}`
	f.Add(msgFile(env, body, packageFrame("pkg"), stateBytes(sealed), packageFrame("old"), stateBytes(other)))
	f.Add(msgFile(env, body, stateBytes(other), packageFrame("pkg"), stateBytes(sealed)))
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, end, err := parseMessage(id, bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrBadSpoolFile) {
				t.Fatalf("error %v is not ErrBadSpoolFile", err)
			}
			return
		}
		if end > int64(len(data)) || end < rec.file.body+rec.file.bodyLen {
			t.Fatalf("committed end %d outside body end %d .. size %d", end, rec.file.body+rec.file.bodyLen, len(data))
		}
		for _, p := range rec.Packages {
			if p.Off < rec.file.body+rec.file.bodyLen || p.Off+p.Len > end {
				t.Fatalf("package at %d+%d outside the committed frames (end %d)", p.Off, p.Len, end)
			}
			if sh := p.Shared; sh != nil && (sh.Off < rec.file.body+rec.file.bodyLen || sh.Off+sh.Len > end) {
				t.Fatalf("shared part at %d+%d outside the committed frames (end %d)", sh.Off, sh.Len, end)
			}
		}
		again, end2, err := parseMessage(id, bytes.NewReader(data[:end]), end)
		if err != nil || end2 != end {
			t.Fatalf("cut file: %v, end %d, want %d", err, end2, end)
		}
		a, _ := json.Marshal(rec)
		b, _ := json.Marshal(again)
		if !bytes.Equal(a, b) {
			t.Fatalf("cut file gives %s, want %s", b, a)
		}
	})
}

// Reply text comes from remote servers; whatever it holds, the DSN keeps one
// block per failed recipient and no injected fields.
func FuzzDSN(f *testing.F) {
	f.Add("c@example.test", "smtp; 550 5.1.1 no such user")
	f.Add("c@example.test", "smtp; 550 x\r\n\r\nFinal-Recipient: rfc822; b@example.test")
	f.Add("c@example.test\r\nBcc: b@example.test", "x")
	f.Add("ü@example.test", "\x00\x7f\u2028")
	f.Fuzz(func(t *testing.T, addr, diag string) {
		d := &dsn{hostname: "relay.example.test", id: "x", sender: "a@example.test", now: time.Unix(0, 0),
			arrival: time.Unix(0, 0), rcpts: []*rcptRecord{{Addr: addr, Status: "5.0.0", Diag: diag}}}
		var b bytes.Buffer
		if _, err := d.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if n := strings.Count(out, "\r\nFinal-Recipient:"); n != 1 {
			t.Fatalf("%d Final-Recipient fields", n)
		}
		if strings.Contains(out, "\r\nBcc:") {
			t.Fatal("header injected")
		}
		for _, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if strings.ContainsAny(line, "\r\n") || len(line) > 998 {
				t.Fatalf("bad line %q", line)
			}
		}
	})
}
