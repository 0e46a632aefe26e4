package compliance

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/audit"
	"appliance/queue"
	"appliance/smtpfront"
)

// fixedBody writes the same bytes each time, as a spooled package does.
type fixedBody []byte

func (b fixedBody) WriteTo(w io.Writer) (int64, error) {
	n, err := w.Write(b)
	return int64(n), err
}

// twoPackages stands in for the pipeline: two packages of the message.
type twoPackages struct{}

func (twoPackages) Process(_ context.Context, _ string, env queue.Envelope, body io.Reader) (*queue.Sealed, error) {
	if _, err := io.ReadAll(body); err != nil {
		return nil, err
	}
	return &queue.Sealed{Packages: []queue.Package{
		{MailFrom: env.MailFrom, RcptTo: env.RcptTo[:1], Body: fixedBody("To: b\r\n\r\none\r\n"), Mode: "encrypted", Profile: "compat"},
		{MailFrom: env.MailFrom, RcptTo: env.RcptTo[1:], Body: fixedBody("To: b\r\n\r\ntwo\r\n"), Mode: "encrypted", Profile: "compat"},
	}}, nil
}

type readingSpool struct{}

func (readingSpool) Accept(_ context.Context, _ queue.Envelope, body io.Reader) (string, error) {
	_, err := io.ReadAll(body)
	return "m1", err
}

// TestComplianceAudit: serve's audit wiring writes an accepted record (size and SHA-256 of what
// the queue got) before Accept returns, a sealed record per package with the SHA-256 of the bytes
// the spool wrote once they are written, a delivery record per outcome; the closed trail
// verifies. A trail that cannot be written refuses the message with a temporary error.
func TestComplianceAudit(t *testing.T) {
	dir := t.TempDir()
	l, err := audit.Open(audit.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	c := New(Options{Audit: l})
	env := queue.Envelope{MailFrom: "alice@example.test", RcptTo: []string{"bob@example.test", "dave@example.test"}, AuthUser: "alice"}
	msg := "Subject: x\r\n\r\nhello\r\n"
	id, err := c.Spooler(readingSpool{}).Accept(context.Background(), env, strings.NewReader(msg))
	if err != nil || id != "m1" {
		t.Fatalf("Accept: %q %v", id, err)
	}
	sealed, err := c.Processor(twoPackages{}).Process(context.Background(), id, env, strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	var spooled [][]byte
	for _, pk := range sealed.Packages {
		var b bytes.Buffer
		if _, err := pk.Body.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		spooled = append(spooled, b.Bytes())
	}
	out := c.Outcome()
	out(queue.Outcome{Message: id, Package: 0, Recipient: "bob@example.test", State: "delivered"})
	out(queue.Outcome{Message: id, Package: 1, Recipient: "dave@example.test", State: "failed", Err: errors.New("550 no")})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	files, _ := filepath.Glob(filepath.Join(dir, "audit-*.log"))
	rep, err := audit.Verify(files, audit.VerifyOptions{})
	if err != nil || rep.Problem != nil {
		t.Fatalf("verify: %v %+v", err, rep)
	}
	var got []audit.Record
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for sc := bufio.NewScanner(bytes.NewReader(b)); sc.Scan(); {
			var r audit.Record
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			if r.Type != audit.TypeOpen && r.Type != audit.TypeSeal {
				got = append(got, r)
			}
		}
	}
	if len(got) != 5 {
		t.Fatalf("%d records: %+v", len(got), got)
	}
	a := got[0]
	if a.Type != audit.TypeAccepted || a.Message != "m1" || a.Size != int64(len(msg)) || a.Digest != audit.Digest(sha256.Sum256([]byte(msg))) ||
		len(a.Recipients) != 2 || a.AuthUser != "alice" {
		t.Errorf("accepted record %+v", a)
	}
	for i := range 2 {
		s := got[1+i]
		if s.Type != audit.TypeSealed || *s.Package != i || s.Digest != audit.Digest(sha256.Sum256(spooled[i])) || s.Recipients[0] != env.RcptTo[i] {
			t.Errorf("sealed record %d: %+v", i, s)
		}
	}
	if d := got[4]; d.Type != audit.TypeDelivery || d.Outcome != audit.Bounced || d.Recipient != "dave@example.test" || d.Reply != "550 no" {
		t.Errorf("delivery record %+v", d)
	}

	// The trail is closed now: a message cannot get its record, so it is not acknowledged.
	if _, err := c.Spooler(readingSpool{}).Accept(context.Background(), env, strings.NewReader(msg)); !errors.Is(err, smtpfront.ErrTemporary) {
		t.Errorf("Accept with a closed trail: %v, want a temporary error", err)
	}
}
