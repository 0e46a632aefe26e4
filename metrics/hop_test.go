package metrics

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestNextHop(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := l.Addr().String()
	l.Close() // a port nothing listens on now
	tests := []struct {
		name    string
		addr    string
		record  []error
		wantErr bool
	}{
		{"ok recent success", up, []error{nil}, false},
		{"ok smtp refusal still reached it", up, []error{&smtp.SMTPError{Code: 554}}, false},
		{"fail last attempt failed and dial fails", up, []error{nil, errors.New("connection refused")}, true},
		{"fail nothing recorded and dial fails", up, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &NextHop{Addr: tt.addr}
			for _, e := range tt.record {
				h.Record(e)
			}
			err := h.Probe(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Probe = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "failed to reach next hop") {
				t.Errorf("error %q", err)
			}
		})
	}
	// A listening next hop makes the dial pass even after a failure.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	h := &NextHop{Addr: l2.Addr().String()}
	h.Record(errors.New("timeout"))
	if err := h.Probe(context.Background()); err != nil {
		t.Fatalf("probe with the next hop listening: %v", err)
	}
}
