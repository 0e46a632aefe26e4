package smtpfront

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestRequireHealthy(t *testing.T) {
	down := errors.New("token gone")
	var health error
	p := RequireHealthy(newTestPolicy(), func() error { return health })
	health = down
	err := p.CheckSender(context.Background(), "alice@example.test", "")
	r := Reply(StageMail, err)
	if r == nil || r.Code != 451 || fmt.Sprint(r.EnhancedCode) != "[4 3 0]" {
		t.Fatalf("reply %v, want 451 4.3.0", r)
	}
	if strings.Contains(r.Message, "token") {
		t.Errorf("reply %q names the token", r.Message)
	}
	health = nil
	if err := p.CheckSender(context.Background(), "alice@example.test", ""); err != nil {
		t.Errorf("healthy: %v", err)
	}
}
