// Command loadgen drives the load benchmark of issue 11: it submits mail over N concurrent SMTP
// connections (go-smtp client) to a relay, receives what the relay hands on in a sink of its
// own, and times each message from the start of its submission to the arrival of its last
// package. The same generator and sink measure Postfix and the appliance, so the two differ
// only in the relay between them.
//
//	loadgen run   -target ADDR -sink ADDR -shape SHAPE [-message FILE] [-conns N] [-duration D] [-watch PID] [-label L] [-out FILE]
//	loadgen floor -config FILE [-p256-key URI] [-parallel N] [-out FILE]   (per-operation HSM rates -> floor per shape)
//	loadgen report FILE...                                  (the table, with the ratios b/a and b/c)
//	loadgen freeport                                        (a free loopback port, for the script)
//
// A message counts as relayed when the sink has seen each of its envelope recipients once, in
// however many transactions the relay used (Postfix: one per message; the appliance: one per
// package). Messages are matched by Message-ID, which both relays keep.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "floor":
		err = cmdFloor(os.Args[2:])
	case "report":
		err = cmdReport(os.Args[2:])
	case "freeport":
		err = cmdFreePort()
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: loadgen run|floor|report [flags]; loadgen CMD -h for flags")
	os.Exit(2)
}

// Result is one measured run, one JSON object per line in the results file.
type Result struct {
	Kind  string `json:"kind"` // "relay" or "floor"
	Label string `json:"label"`
	Shape string `json:"shape"`
	Conns int    `json:"conns,omitempty"`

	Messages    int     `json:"messages"`
	Packages    int     `json:"packages"`
	Failed      int     `json:"failed,omitempty"`     // submissions refused or broken
	Deferred    int     `json:"deferred,omitempty"`   // submissions answered 4xx, tried again after a backoff
	Unfinished  int     `json:"unfinished,omitempty"` // accepted but not all relayed before the drain timeout
	Seconds     float64 `json:"seconds"`
	MsgPerSec   float64 `json:"msg_per_s"`
	PkgPerSec   float64 `json:"pkg_per_s"`
	SubmitP50ms float64 `json:"submit_p50_ms,omitempty"`
	SubmitP99ms float64 `json:"submit_p99_ms,omitempty"`
	E2EP50ms    float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99ms    float64 `json:"e2e_p99_ms,omitempty"`
	PeakRSSMB   float64 `json:"peak_rss_mb,omitempty"`
	CPUSeconds  float64 `json:"cpu_s,omitempty"`
	CPUPerMsgMs float64 `json:"cpu_per_msg_ms,omitempty"`
	LoadBefore  string  `json:"load_before"`
	LoadAfter   string  `json:"load_after"`
	Cores       int     `json:"cores"`
	// SinkConns is how many connections the sink accepted (relay runs), so SinkConns/Packages
	// is connections per transaction: 1 when a relay dials for every package.
	SinkConns int `json:"sink_conns,omitempty"`
	// OwnCPUPerMsgMs is the load generator's own CPU (the submitting side and the sink, one
	// process) per message: in a relay run what the sink and generator cost beside the relay,
	// in the wire floor what the floor's sender and sink cost per message of the shape.
	OwnCPUPerMsgMs float64 `json:"own_cpu_per_msg_ms,omitempty"`

	// Floor only: per-operation rates (operations or bytes per second, with Parallel goroutines).
	Parallel   int                `json:"parallel,omitempty"`
	Rates      map[string]float64 `json:"rates,omitempty"`
	FloorPerOp map[string]float64 `json:"floor_ms_per_msg,omitempty"`
}

// ownCPU is this process's user+system time so far.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func writeResult(path string, r Result) error {
	r.Cores = runtime.NumCPU()
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("failed to encode result: %w", err)
	}
	fmt.Println(string(b))
	if path == "" {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("failed to open results file: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("failed to write results file %q: %w", path, err)
	}
	return nil
}

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	target := fs.String("target", "127.0.0.1:2525", "relay to submit to")
	sinkAddr := fs.String("sink", "127.0.0.1:2526", "address the sink listens on (the relay's next hop)")
	shapeName := fs.String("shape", "10k", "message shape: "+strings.Join(shapeNames(), ", "))
	conns := fs.Int("conns", 8, "concurrent SMTP connections")
	duration := fs.Duration("duration", 20*time.Second, "how long to submit")
	drain := fs.Duration("drain", 3*time.Minute, "how long to wait afterwards for the relay to hand everything on")
	watch := fs.Int("watch", 0, "pid of the relay (with its descendants) for peak RSS and CPU; 0: none")
	label := fs.String("label", "", "name of the relay in the report")
	out := fs.String("out", "", "append the result as a JSON line to this file")
	message := fs.String("message", "", "a client's S/MIME entity (MIME header fields, blank line, body) for a client-encrypted shape")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile (generator and sink) to this file")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("failed to profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("failed to profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}

	sh, ok := shapes[*shapeName]
	if !ok {
		return fmt.Errorf("failed to run: unknown shape %q", *shapeName)
	}
	var entity []byte
	if *message != "" {
		b, err := os.ReadFile(*message)
		if err != nil {
			return fmt.Errorf("failed to read message: %w", err)
		}
		entity = crlf(b)
	}
	res, err := runLoad(loadOptions{
		Target: *target, Sink: *sinkAddr, Shape: sh, Conns: *conns,
		Duration: *duration, Drain: *drain, Watch: *watch, Entity: entity,
	})
	if err != nil {
		return err
	}
	res.Label = *label
	return writeResult(*out, res)
}

// crlf ends every line of b with CRLF (openssl writes S/MIME with LF).
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// errNoMessages reports a run in which nothing was relayed.
var errNoMessages = errors.New("no message was relayed")

// cmdFreePort prints a loopback TCP port that was free a moment ago, for the bench script.
func cmdFreePort() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("failed to find a free port: %w", err)
	}
	defer l.Close()
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	return nil
}
