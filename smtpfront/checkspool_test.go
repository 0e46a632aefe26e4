package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"appliance/queue"
)

// queueStager is the real queue as the daemon wires it (its Staged is a StagedMessage).
type queueStager struct{ q *queue.Queue }

func (s queueStager) Stage(ctx context.Context, env queue.Envelope, body io.Reader) (StagedMessage, error) {
	st, err := s.q.Stage(ctx, env, body)
	if err != nil {
		return nil, err
	}
	return st, nil
}

type nopProc struct{}

func (nopProc) Process(context.Context, string, queue.Envelope, io.Reader) (*queue.Sealed, error) {
	return &queue.Sealed{}, nil
}

type nopDeliverer struct{}

func (nopDeliverer) Deliver(context.Context, string, []string, io.Reader) ([]queue.RcptResult, error) {
	return nil, nil
}

// spooled lists what the spool directory holds besides files kept for reuse.
func spooled(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"tmp", "msg"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), "free-") {
				out = append(out, sub+"/"+e.Name())
			}
		}
	}
	return out
}

// TestCheckedSpooler: the message streams into the spool, the check reads it from there, and
// it is committed (with the check's class in its envelope) or, when refused, discarded: nothing
// refused stays in the spool.
func TestCheckedSpooler(t *testing.T) {
	cause := errors.New("the cause, for the log")
	tests := []struct {
		name      string
		msg       string
		class     string
		check     error
		wantReply string // "" accepted
	}{
		{"ok passes", "Subject: x\r\n\r\nbody\r\n", "plain", nil, ""},
		{"ok another error is the queue's", "Subject: x\r\n\r\n", "plain", errors.New("directory down"), ""},
		{"fail refused", "Subject: x\r\n\r\n", "", &MessageRefusal{Text: "message refused: envelope under a signature", Err: cause}, "554 [5 7 1] message refused: envelope under a signature"},
		{"fail malformed", "Subject: x\r\n\r\n", "", fmt.Errorf("wrapped: %w", &MessageRefusal{Text: "bad\x1b\u00e9 DER", Malformed: true}), "550 [5 6 0] bad?? DER"},
		{"fail too big", strings.Repeat("x", 65), "", nil, "552 [5 3 4] message exceeds size limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			q, err := queue.Open(queue.Options{Dir: dir, Hostname: "relay.example.test", MaxMessageBytes: 64}, nopProc{}, nopDeliverer{})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			var seen string
			checked := false
			s := CheckedSpooler(queueStager{q}, func(_ context.Context, _ queue.Envelope, msg *io.SectionReader) (string, error) {
				checked = true
				b, err := io.ReadAll(msg)
				if err != nil {
					t.Error(err)
				}
				seen = string(b)
				if files := spooled(t, dir); len(files) > 1 || (len(files) == 1 && !strings.HasPrefix(files[0], "tmp/")) {
					t.Errorf("while checked, the spool holds %v; want the message staged in tmp/", files)
				}
				return tt.class, tt.check
			})
			_, err = s.Accept(context.Background(), queue.Envelope{RcptTo: []string{"b@example.test"}}, strings.NewReader(tt.msg))
			if tt.wantReply == "" {
				files := spooled(t, dir)
				if err != nil || len(files) != 1 || !strings.HasPrefix(files[0], "msg/") || seen != tt.msg {
					t.Fatalf("err %v, spooled %v, checked %q", err, files, seen)
				}
				raw, err := os.ReadFile(filepath.Join(dir, files[0]))
				// A check that failed found nothing to keep.
				if want := tt.class; (tt.check == nil) != strings.Contains(string(raw), `"Class":"`+want+`"`) || !strings.HasSuffix(string(raw), tt.msg) {
					t.Errorf("spool file %q, %v; want the message, with the class %q only if the check did not fail", raw, err, want)
				}
				return
			}
			var r = Reply(StageData, err)
			if strings.Contains(tt.name, "too big") {
				// The queue refuses what is over its limit; the daemon maps it (frontSpool).
				if !errors.Is(err, queue.ErrMessageTooBig) || checked {
					t.Errorf("err %v, checked %v", err, checked)
				}
			} else if got := fmt.Sprintf("%d %v %s", r.Code, r.EnhancedCode, r.Message); got != tt.wantReply {
				t.Errorf("reply %q, want %q", got, tt.wantReply)
			}
			if files := spooled(t, dir); len(files) != 0 {
				t.Errorf("a refused message stayed in the spool: %v", files)
			}
			if tt.check != nil && !errors.Is(err, cause) && strings.Contains(tt.name, "refused") {
				t.Errorf("the cause is lost: %v", err)
			}
		})
	}
}
