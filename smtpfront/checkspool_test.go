package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"appliance/queue"
)

type countingSpool struct{ got []string }

func (c *countingSpool) Accept(_ context.Context, _ queue.Envelope, body io.Reader) (string, error) {
	b, err := io.ReadAll(body)
	c.got = append(c.got, string(b))
	return "id", err
}

func TestCheckedSpooler(t *testing.T) {
	cause := errors.New("the cause, for the log")
	tests := []struct {
		name      string
		msg       string
		check     error
		wantReply string // "" accepted
	}{
		{"ok passes", "Subject: x\r\n\r\nbody\r\n", nil, ""},
		{"ok another error is the queue's", "Subject: x\r\n\r\n", errors.New("directory down"), ""},
		{"fail refused", "Subject: x\r\n\r\n", &MessageRefusal{Text: "message refused: envelope under a signature", Err: cause}, "554 [5 7 1] message refused: envelope under a signature"},
		{"fail malformed", "Subject: x\r\n\r\n", fmt.Errorf("wrapped: %w", &MessageRefusal{Text: "bad\x1b\u00e9 DER", Malformed: true}), "550 [5 6 0] bad?? DER"},
		{"fail too big", strings.Repeat("x", 65), nil, "552 [5 3 4] message exceeds size limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := &countingSpool{}
			var seen string
			s := CheckedSpooler(next, 64, func(_ context.Context, _ queue.Envelope, msg []byte) error {
				seen = string(msg)
				return tt.check
			})
			_, err := s.Accept(context.Background(), queue.Envelope{}, strings.NewReader(tt.msg))
			if tt.wantReply == "" {
				if err != nil || len(next.got) != 1 || next.got[0] != tt.msg || seen != tt.msg {
					t.Fatalf("err %v, spooled %q, checked %q", err, next.got, seen)
				}
				return
			}
			r := Reply(StageData, err)
			if got := fmt.Sprintf("%d %v %s", r.Code, r.EnhancedCode, r.Message); got != tt.wantReply {
				t.Errorf("reply %q, want %q", got, tt.wantReply)
			}
			if len(next.got) != 0 {
				t.Errorf("a refused message was spooled")
			}
			if tt.check != nil && !errors.Is(err, cause) && strings.Contains(tt.name, "refused") {
				t.Errorf("the cause is lost: %v", err)
			}
		})
	}
}
