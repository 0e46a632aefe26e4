package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition for /readyz.
type Check struct {
	Name string // short, stable: "hsm", "spool", "next_hop"
	// Probe returns nil when the condition holds. It gets a context bounded by
	// [CheckTimeout] and must be safe for concurrent use.
	Probe func(ctx context.Context) error
}

// CheckTimeout bounds each readiness probe: a load balancer asks often and a probe that hangs on
// a dead HSM must answer "not ready", not time the balancer out.
const CheckTimeout = 3 * time.Second

// Handler serves
//
//	/metrics  the Prometheus text format
//	/healthz  200 "ok" while the process serves HTTP at all (liveness)
//	/readyz   200 "ok" when every check passes, else 503 with one "name: error" line per failure
//
// The error text of a probe is shown on /readyz: it is for operators on the metrics listener,
// which should not be public.
func (m *Metrics) Handler(checks []Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	ready := &readiness{checks: checks}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		failures := ready.run(r.Context())
		if len(failures) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			for _, f := range failures {
				fmt.Fprintln(w, f)
			}
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

// readiness runs the checks in parallel, and one round at a time: a burst of probes must not
// turn into a burst of HSM sessions.
type readiness struct {
	mu     sync.Mutex
	checks []Check
}

func (r *readiness) run(ctx context.Context) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	errs := make([]error, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Probe(ctx) }()
			select {
			case errs[i] = <-done:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("no answer within %v", CheckTimeout)
			}
		})
	}
	wg.Wait()
	var out []string
	for i, err := range errs {
		if err != nil {
			out = append(out, r.checks[i].Name+": "+oneLine(err.Error()))
		}
	}
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Server is the metrics listener.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Serve listens on addr ("host:port") and serves [Metrics.Handler] until Close.
func (m *Metrics) Serve(addr string, checks []Check) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("failed to listen on %q: %w", addr, err)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           m.Handler(checks),
			ReadHeaderTimeout: 10 * time.Second,
			WriteTimeout:      30 * time.Second,
		},
		addr: l.Addr().String(),
		done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(l) }()
	return s, nil
}

// Addr is the address the listener is bound to.
func (s *Server) Addr() string { return s.addr }

// Close stops the listener and waits for open requests for up to five seconds.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serr := <-s.done; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
