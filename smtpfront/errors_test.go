package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/emersion/go-smtp"
)

type tempErr struct{}

func (tempErr) Error() string   { return "hsm: CKR_DEVICE_REMOVED on slot 3" }
func (tempErr) Temporary() bool { return true }

func TestReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		stage Stage
		err   error
		want  string // "code x.y.z"
		text  string // exact text, if set
	}{
		{"ok nil", StageData, nil, "", ""},
		{"fail sender refused", StageMail, fmt.Errorf("failed to check sender %q: %w", "x@y", ErrSenderRefused), "550 5.7.1", "sender not authorized"},
		{"fail recipient refused", StageRcpt, ErrRecipientRefused, "550 5.7.1", "recipient refused by policy"},
		{"fail policy text", StageRcpt, fmt.Errorf("wrapped: %w", &PolicyError{Text: "no certificate for <c@d>", Err: errors.New("label x")}), "550 5.7.1", "no certificate for <c@d>"},
		{"fail policy temporary", StageRcpt, &PolicyError{Text: "directory unavailable", Temporary: true}, "451 4.3.0", "directory unavailable"},
		{"fail too many recipients", StageRcpt, ErrTooManyRecipients, "452 4.5.3", ""},
		{"fail too big", StageData, ErrMessageTooBig, "552 5.3.4", ""},
		{"fail go-smtp too big", StageData, smtp.ErrDataTooLarge, "552 5.3.4", ""},
		{"fail bad recipient address", StageRcpt, ErrBadAddress, "501 5.1.3", ""},
		{"fail bad sender address", StageMail, ErrBadAddress, "501 5.1.7", ""},
		{"fail malformed", StageData, ErrMalformedMessage, "550 5.6.0", ""},
		{"fail malformed with text", StageData, &messageError{text: "message has no header"}, "550 5.6.0", "message has no header"},
		{"fail spool full", StageData, ErrSpoolFull, "452 4.3.1", ""},
		{"fail enospc", StageData, &os.PathError{Op: "write", Path: "/var/spool/x", Err: syscall.ENOSPC}, "452 4.3.1", ""},
		{"fail edquot", StageData, fmt.Errorf("failed: %w", syscall.EDQUOT), "452 4.3.1", ""},
		{"fail temporary sentinel", StageData, ErrTemporary, "451 4.3.0", ""},
		{"fail temporary method", StageData, fmt.Errorf("failed to seal: %w", tempErr{}), "451 4.3.0", ""},
		{"fail context deadline", StageRcpt, context.DeadlineExceeded, "451 4.3.0", ""},
		{"fail auth required", StageMail, ErrAuthRequired, "530 5.7.0", ""},
		{"fail smtp error kept", StageData, smtp.ErrAuthFailed, "535 5.7.8", ""},
		{"fail line too long", StageData, smtp.ErrTooLongLine, "500 5.5.2", ""},
		{"fail unknown", StageData, fmt.Errorf("failed to open %q: %w", "/var/spool/appliance/q", io.ErrClosedPipe), "554 5.0.0", "transaction failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Reply(tt.stage, tt.err)
			if tt.want == "" {
				if r != nil {
					t.Fatalf("Reply = %+v, want nil", r)
				}
				return
			}
			got := fmt.Sprintf("%d %d.%d.%d", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2])
			if got != tt.want {
				t.Errorf("Reply = %s %q, want %s", got, r.Message, tt.want)
			}
			if tt.text != "" && r.Message != tt.text {
				t.Errorf("text = %q, want %q", r.Message, tt.text)
			}
			for _, leak := range []string{"/var/spool", "label", "slot", "x@y", "CKR_"} {
				if strings.Contains(r.Message, leak) {
					t.Errorf("reply %q leaks %q", r.Message, leak)
				}
			}
		})
	}
}

func TestPolicyErrorUnwraps(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	err := fmt.Errorf("wrap: %w", &PolicyError{Text: "t", Err: cause})
	if !errors.Is(err, cause) {
		t.Error("PolicyError does not unwrap to its cause")
	}
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Text != "t" {
		t.Error("PolicyError not found with errors.As")
	}
	if !errors.Is(&messageError{text: "x"}, ErrMalformedMessage) {
		t.Error("messageError is not ErrMalformedMessage")
	}
}
