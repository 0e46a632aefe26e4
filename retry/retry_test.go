package retry

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

type flagged bool

func (f flagged) Error() string   { return "flagged" }
func (f flagged) Temporary() bool { return bool(f) }

func TestIsTemporary(t *testing.T) {
	plain := errors.New("plain")
	for _, tt := range []struct {
		name     string
		err      error
		def      bool
		want     bool
		wantNext bool // with !def
	}{
		{"ok marked", Temporary(plain), false, true, true},
		{"ok marked and wrapped", fmt.Errorf("sealing: %w", Temporary(plain)), false, true, true},
		{"ok the error says permanent", fmt.Errorf("x: %w", flagged(false)), true, false, false},
		{"ok the outermost says", Temporary(flagged(false)), false, true, true},
		{"ok no method: the default", plain, true, true, false},
		{"ok a deadline says temporary itself", context.DeadlineExceeded, false, true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTemporary(tt.err, tt.def); got != tt.want {
				t.Errorf("IsTemporary(%v, %v) = %v", tt.err, tt.def, got)
			}
			if got := IsTemporary(tt.err, !tt.def); got != tt.wantNext {
				t.Errorf("IsTemporary(%v, %v) = %v", tt.err, !tt.def, got)
			}
			if !errors.Is(Temporary(tt.err), tt.err) {
				t.Error("Temporary hides the cause")
			}
		})
	}
	if Temporary(nil) != nil {
		t.Error("Temporary(nil) is not nil")
	}
}
