package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"appliance/internal/sink"
	"appliance/internal/softhsmtest"
	"appliance/metrics"
)

// startWithExtra starts `appliance serve` like StartDaemon, with extra TOML appended to the
// configuration (tables the harness's Config does not model, such as [metrics]).
func startWithExtra(t *testing.T, env *softhsmtest.Env, cfg Config, extra string) *Daemon {
	t.Helper()
	path, err := cfg.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(f, "\n"+extra); err != nil {
		t.Fatal(err)
	}
	f.Close()
	d := &Daemon{Bin: Build(t), ConfigPath: path, Addr: cfg.SMTP.Listen, Env: []string{"SOFTHSM2_CONF=" + env.Conf}}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("appliance serve log (%s):\n%s", d.ConfigPath, tail(d.Log(), 60))
		}
	})
	if err := d.WaitReady(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	return d
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestMetrics runs a known workload through the daemon and checks that every counter says
// exactly what happened, then that /readyz follows the next hop going away and coming back.
func TestMetrics(t *testing.T) {
	t.Parallel()
	env := softhsmtest.Setup(t)
	pki, err := LoadPKI(env.PKI)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sink.Start(sink.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := NewConfig(t, env, s.Addr())
	maddr := FreeAddr(t)
	d := startWithExtra(t, env, cfg, fmt.Sprintf("[metrics]\nlisten = %q\n", maddr))
	base := "http://" + maddr

	if code, body := httpGet(t, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q", code, body)
	}

	// The workload: two messages spooled (3 packages), one recipient and one sender refused.
	m1 := Message{From: alice, To: []string{bob}, Cc: []string{carol}, Bcc: []string{dave}, Subject: "metrics 1", Text: "one"}
	res, err := SubmitGo(d.Addr, alice, []string{bob, carol, dave, nocert}, m1.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if res.Data != nil || res.Rcpt[nocert] == nil {
		t.Fatalf("submission 1: DATA %v, RCPT %s %v", res.Data, nocert, res.Rcpt[nocert])
	}
	m2 := Message{From: alice, To: []string{erin}, Subject: "metrics 2", Text: "two"}
	if res, err = SubmitGo(d.Addr, alice, []string{erin}, m2.Bytes()); err != nil || res.Data != nil {
		t.Fatalf("submission 2: %v %v", err, res.Data)
	}
	m3 := Message{From: "mallory@example.test", To: []string{bob}, Subject: "metrics 3", Text: "three"}
	if res, err = SubmitGo(d.Addr, m3.From, []string{bob}, m3.Bytes()); err != nil || res.Mail == nil {
		t.Fatalf("submission 3 (unknown sender): %v, MAIL %v", err, res.Mail)
	}
	txs, err := WaitPackages(s, 3, 60*time.Second, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// The counters are only worth checking on mail that is right.
	checker := &Checker{PKI: pki, Tmp: t.TempDir()}
	byRcpt := map[string][]sink.Transaction{}
	for _, tx := range txs {
		if strings.EqualFold(tx.RcptTo[0], erin) {
			byRcpt["2"] = append(byRcpt["2"], tx)
		} else {
			byRcpt["1"] = append(byRcpt["1"], tx)
		}
	}
	if _, err := checker.Check(context.Background(), Expect{From: alice, To: m1.To, Cc: m1.Cc, Bcc: m1.Bcc, Rcpt: []string{bob, carol, dave}}, byRcpt["1"]); err != nil {
		t.Fatal(err)
	}
	if _, err := checker.Check(context.Background(), Expect{From: alice, To: m2.To, Rcpt: []string{erin}}, byRcpt["2"]); err != nil {
		t.Fatal(err)
	}

	// Delivery is recorded in the spool after the sink's 250: wait until the queue is empty.
	var got map[string]float64
	deadline := time.Now().Add(20 * time.Second)
	for {
		got, err = metrics.Scrape(context.Background(), base+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if got[`appliance_queue_recipients_total{result="delivered"}`] == 4 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	want := []struct {
		name, series string
		want         float64
	}{
		{"ok received", `appliance_messages_received_total`, 2},
		{"ok refused no certificate", `appliance_messages_refused_total{reason="no_certificate"}`, 1},
		{"ok refused sender", `appliance_messages_refused_total{reason="sender_not_authorized"}`, 1},
		{"ok refused nothing else", `appliance_messages_refused_total{reason="other"}`, 0},
		{"ok sealed compat", `appliance_packages_sealed_total{mode="encrypted",profile="compat"}`, 3},
		{"ok sealed modern", `appliance_packages_sealed_total{mode="encrypted",profile="modern"}`, 0},
		{"ok sealed signed", `appliance_packages_sealed_total{mode="signed",profile="none"}`, 0},
		// One content key, one encryption and one signature per message; one wrap per
		// certificate: bob, carol, dave and alice's self-copy, then erin and alice.
		{"ok hsm generate", `appliance_hsm_operations_total{op="generate_cek",result="ok"}`, 2},
		{"ok hsm encrypt", `appliance_hsm_operations_total{op="encrypt",result="ok"}`, 2},
		{"ok hsm sign", `appliance_hsm_operations_total{op="sign",result="ok"}`, 2},
		{"ok hsm wrap", `appliance_hsm_operations_total{op="wrap",result="ok"}`, 6},
		{"ok hsm destroy", `appliance_hsm_operations_total{op="destroy",result="ok"}`, 2},
		{"ok hsm no failures", `appliance_hsm_operations_total{op="wrap",result="permanent"}`, 0},
		{"ok hsm latency observed", `appliance_hsm_operation_duration_seconds_count{op="wrap"}`, 6},
		{"ok deliveries", `appliance_delivery_attempts_total{result="ok"}`, 3},
		{"ok no failed deliveries", `appliance_delivery_attempts_total{result="temporary"}`, 0},
		// At RCPT (bob, carol, dave, erin; nocert missed) and again while sealing (bob, carol, dave, erin).
		{"ok lookups hit", `appliance_directory_lookups_total{result="hit"}`, 8},
		{"ok lookups miss", `appliance_directory_lookups_total{result="miss"}`, 1},
		{"ok queue empty", `appliance_queue_messages{state="sealed"}`, 0},
		{"ok queue nothing pending", `appliance_queue_packages{state="pending"}`, 0},
		{"ok recipients delivered", `appliance_queue_recipients_total{result="delivered"}`, 4},
		{"ok no dsn", `appliance_queue_dsns_total`, 0},
	}
	for _, w := range want {
		t.Run(w.name, func(t *testing.T) {
			v, ok := got[w.series]
			if !ok {
				t.Fatalf("%s missing from /metrics", w.series)
			}
			if v != w.want {
				t.Errorf("%s = %v, want %v", w.series, v, w.want)
			}
		})
	}

	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz = %d %q, want 200", code, body)
	}
	// The next hop goes away and a delivery fails: not ready, naming the next hop only.
	if err := s.Down(); err != nil {
		t.Fatal(err)
	}
	m4 := Message{From: alice, To: []string{bob}, Subject: "metrics 4", Text: "four"}
	if res, err = SubmitGo(d.Addr, alice, []string{bob}, m4.Bytes()); err != nil || res.Data != nil {
		t.Fatalf("submission 4: %v %v", err, res.Data)
	}
	waitFor(t, 20*time.Second, "a failed delivery attempt", func() bool {
		got, err := metrics.Scrape(context.Background(), base+"/metrics")
		return err == nil && got[`appliance_delivery_attempts_total{result="temporary"}`] >= 1
	})
	code, body := httpGet(t, base+"/readyz")
	if code != 503 || !strings.HasPrefix(body, "next_hop: ") || strings.Count(body, "\n") != 1 {
		t.Fatalf("/readyz with the next hop down = %d %q, want 503 naming next_hop only", code, body)
	}
	if err := s.Up(); err != nil {
		t.Fatal(err)
	}
	if code, body := httpGet(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz after the next hop came back = %d %q", code, body)
	}
	if _, err := WaitPackages(s, 4, 30*time.Second, 0); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
