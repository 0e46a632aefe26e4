package metrics

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type tempErr struct{}

func (tempErr) Error() string   { return "busy" }
func (tempErr) Temporary() bool { return true }

func TestResult(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"ok nil", nil, ResultOK},
		{"ok temporary", tempErr{}, ResultTemporary},
		{"ok wrapped temporary", errors.Join(errors.New("x"), tempErr{}), ResultTemporary},
		{"ok permanent", errors.New("bad"), ResultPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Result(tt.err); got != tt.want {
				t.Fatalf("Result(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestCounters(t *testing.T) {
	m := New()
	m.Received()
	m.Received()
	m.Refused(ReasonNoCert)
	m.Sealed(ModeEncrypted, ProfileModern)
	m.HSM(OpSign, time.Millisecond, nil)
	m.HSM(OpSign, time.Millisecond, tempErr{})
	m.Delivery(ResultPartial)
	m.Lookup(true)
	m.Lookup(false)
	m.Lookup(false)
	m.ObserveQueue(func() QueueStats {
		return QueueStats{Messages: 5, Received: 3, SealDeferred: 1, Pending: 4, Deferred: 1, Delivered: 7, Failed: 2, DSNs: 1}
	})
	m.ObserveFront(func() FrontStats {
		return FrontStats{Open: 9, Trusted: 6, Stressed: true, StressEntered: 2, RefusedTotal: 4, RefusedPerIP: 3, RateClosed: 5,
			Shed: map[string]uint64{"hsm_backlog": 8, "memory": 0}}
	})

	tests := []struct {
		name, series string
		want         float64
	}{
		{"ok received", "appliance_messages_received_total", 2},
		{"ok refused", `appliance_messages_refused_total{reason="no_certificate"}`, 1},
		{"ok refused zero", `appliance_messages_refused_total{reason="spool_full"}`, 0},
		{"ok sealed", `appliance_packages_sealed_total{mode="encrypted",profile="modern"}`, 1},
		{"ok sealed zero", `appliance_packages_sealed_total{mode="encrypted",profile="compat"}`, 0},
		{"ok hsm ok", `appliance_hsm_operations_total{op="sign",result="ok"}`, 1},
		{"ok hsm temporary", `appliance_hsm_operations_total{op="sign",result="temporary"}`, 1},
		{"ok hsm latency count", `appliance_hsm_operation_duration_seconds_count{op="sign"}`, 2},
		{"ok delivery", `appliance_delivery_attempts_total{result="partial"}`, 1},
		{"ok lookup hit", `appliance_directory_lookups_total{result="hit"}`, 1},
		{"ok lookup miss", `appliance_directory_lookups_total{result="miss"}`, 2},
		{"ok queue received", `appliance_queue_messages{state="received"}`, 2},
		{"ok queue seal deferred", `appliance_queue_messages{state="seal_deferred"}`, 1},
		{"ok queue sealed", `appliance_queue_messages{state="sealed"}`, 2},
		{"ok queue pending", `appliance_queue_packages{state="pending"}`, 3},
		{"ok queue deferred", `appliance_queue_packages{state="deferred"}`, 1},
		{"ok queue delivered", `appliance_queue_recipients_total{result="delivered"}`, 7},
		{"ok queue failed", `appliance_queue_recipients_total{result="failed"}`, 2},
		{"ok dsns", `appliance_queue_dsns_total`, 1},
		{"ok smtp trusted", `appliance_smtp_connections{origin="trusted"}`, 6},
		{"ok smtp other", `appliance_smtp_connections{origin="other"}`, 3},
		{"ok smtp stress", `appliance_smtp_stress`, 1},
		{"ok smtp stress entered", `appliance_smtp_stress_entered_total`, 2},
		{"ok smtp refused global", `appliance_smtp_connections_refused_total{limit="global"}`, 4},
		{"ok smtp refused per address", `appliance_smtp_connections_refused_total{limit="per_address"}`, 3},
		{"ok smtp rate closed", `appliance_smtp_rate_closed_total`, 5},
		{"ok smtp shed", `appliance_smtp_mail_shed_total{reason="hsm_backlog"}`, 8},
		{"ok smtp shed zero", `appliance_smtp_mail_shed_total{reason="memory"}`, 0},
	}
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	scraped, err := Scrape(context.Background(), srv.URL+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := scraped[tt.series]
			if !ok {
				t.Fatalf("series %s missing from the scrape", tt.series)
			}
			if got != tt.want {
				t.Fatalf("%s = %v, want %v", tt.series, got, tt.want)
			}
		})
	}
	n := 0
	for k := range scraped {
		if strings.HasPrefix(k, "appliance_messages_refused_total{") {
			n++
		}
	}
	if n != len(reasons) {
		t.Errorf("refused has %d series, want every reason pre-set (%d)", n, len(reasons))
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	// Every recording method is a no-op on nil: the daemon without [metrics] calls them anyway.
	m.Received()
	m.Refused(ReasonOther)
	m.Sealed(ModeSigned, ProfileNone)
	m.HSM(OpWrap, time.Second, nil)
	m.Delivery(ResultOK)
	m.Lookup(true)
	m.ObserveQueue(func() QueueStats { return QueueStats{} })
	m.ObserveFront(func() FrontStats { return FrontStats{} })
}

func TestEndpoints(t *testing.T) {
	fail := errors.New("token   gone\nreally")
	tests := []struct {
		name     string
		path     string
		checks   []Check
		wantCode int
		wantBody string
	}{
		{"ok healthz", "/healthz", []Check{{"hsm", func(context.Context) error { return fail }}}, 200, "ok\n"},
		{"ok readyz all pass", "/readyz", []Check{{"hsm", func(context.Context) error { return nil }}}, 200, "ok\n"},
		{"ok readyz no checks", "/readyz", nil, 200, "ok\n"},
		{"fail readyz one fails", "/readyz", []Check{
			{"hsm", func(context.Context) error { return fail }},
			{"spool", func(context.Context) error { return nil }},
		}, 503, "hsm: token gone really\n"},
		{"fail readyz hangs", "/readyz", []Check{{"next_hop", func(ctx context.Context) error {
			<-ctx.Done()
			time.Sleep(10 * time.Millisecond)
			return nil
		}}}, 503, "next_hop: no answer within 3s\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(New().Handler(tt.checks))
			defer srv.Close()
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantCode || string(body) != tt.wantBody {
				t.Fatalf("GET %s = %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestServe(t *testing.T) {
	m := New()
	s, err := m.Serve("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	m.Received()
	got, err := Scrape(context.Background(), "http://"+s.Addr()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if got["appliance_messages_received_total"] != 1 {
		t.Fatalf("received = %v, want 1", got["appliance_messages_received_total"])
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("runtime metrics missing")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Serve(s.Addr()+"x", nil); err == nil || !strings.Contains(err.Error(), "failed to listen") {
		t.Fatalf("Serve on a bad address: %v", err)
	}
}

func FuzzParseText(f *testing.F) {
	f.Add("# HELP a b\n# TYPE a counter\na 1\n")
	f.Add(`x{a="b",c="d\"e"} 2.5e3` + "\nx_bucket{le=\"+Inf\"} 3\n")
	f.Add("y NaN\nz -Inf 1700000000000\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseText(strings.NewReader(s))
		if err != nil {
			return
		}
		for k := range m {
			if k == "" || strings.ContainsAny(k, "\n ") && !strings.Contains(k, "{") {
				t.Fatalf("bad series name %q", k)
			}
		}
	})
}
