package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// cmdReport prints the results files as one table per shape, with b/a = appliance/postfix and
// b/c = appliance/HSM floor in messages per second, b/d = appliance/wire floor, and d/c: how
// far the wire alone lets any relay on this machine get towards the HSM floor. Labels:
// "postfix" is (a), anything starting with "appliance" is (b), floor results are (c), and the
// floor labelled "wire-floor" is (d).
func cmdReport(args []string) error {
	var all []Result
	for _, p := range args {
		rs, err := readResults(p)
		if err != nil {
			return err
		}
		all = append(all, rs...)
	}
	return report(os.Stdout, all)
}

func readResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read results: %w", err)
	}
	defer f.Close()
	var out []Result
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("failed to parse results file %q: %w", path, err)
		}
		out = append(out, r)
	}
	return out, sc.Err()
}

func report(w io.Writer, all []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "shape\trelay\tconns\tmsgs\tmsg/s\tpkg/s\tsubmit p50 ms\tp99\te2e p50 ms\tp99\tpeak RSS MB\tCPU s\tCPU ms/msg\tloadgen CPU ms/msg\tsink conns\tload before\tload after\t")
	for _, name := range shapeNames() {
		var a, b, c, d *Result
		for i := range all {
			r := &all[i]
			if r.Shape != name {
				continue
			}
			if r.Kind == "floor" {
				label := "(c) HSM floor"
				if r.Label == "wire-floor" {
					d, label = r, "(d) wire floor"
				} else {
					c = r
				}
				fmt.Fprintf(tw, "%s\t%s\t\t\t%.1f\t%.1f\t\t\t\t\t\t\t\t%s\t\t%s\t\t\n", name, label, r.MsgPerSec, r.PkgPerSec, optMs(r.OwnCPUPerMsgMs), r.LoadBefore)
				continue
			}
			tag := "   "
			switch {
			case r.Label == "postfix":
				a, tag = r, "(a)"
			case strings.HasPrefix(r.Label, "appliance") && r.Conns <= 8:
				b, tag = r, "(b)"
			}
			conns := ""
			if r.SinkConns > 0 {
				conns = fmt.Sprint(r.SinkConns)
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.0f\t%.1f\t%.2f\t%s\t%s\t%s\t%s\t\n",
				name, tag, r.Label, r.Conns, r.Messages, r.MsgPerSec, r.PkgPerSec, r.SubmitP50ms, r.SubmitP99ms,
				r.E2EP50ms, r.E2EP99ms, r.PeakRSSMB, r.CPUSeconds, r.CPUPerMsgMs, optMs(r.OwnCPUPerMsgMs), conns, r.LoadBefore, r.LoadAfter)
			if r.Unfinished > 0 || r.Failed > 0 || r.Deferred > 0 {
				fmt.Fprintf(tw, "\t  ! %d unfinished, %d failed, %d deferred (4xx, tried again)\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", r.Unfinished, r.Failed, r.Deferred)
			}
		}
		if a == nil && shapes[name].Base != "" {
			// Postfix does not sign: its run of the base shape is the same load.
			for i := range all {
				if r := &all[i]; r.Shape == shapes[name].Base && r.Label == "postfix" {
					a = r
				}
			}
		}
		if b != nil && a != nil {
			fmt.Fprintf(tw, "%s\tb/a\t\t\t%.2f\t\t\t\t\t\t\t\t\t\t\t\n", name, b.MsgPerSec/a.MsgPerSec)
		}
		if b != nil && c != nil {
			fmt.Fprintf(tw, "%s\tb/c\t\t\t%.2f\t\t\t\t\t\t\t\t\t\t\t\n", name, b.MsgPerSec/c.MsgPerSec)
		}
		if b != nil && d != nil {
			fmt.Fprintf(tw, "%s\tb/d\t\t\t%.2f\t\t\t\t\t\t\t\t\t\t\t\n", name, b.MsgPerSec/d.MsgPerSec)
		}
		if c != nil && d != nil {
			fmt.Fprintf(tw, "%s\td/c\t\t\t%.2f\t\t\t\t\t\t\t\t\t\t\t\n", name, d.MsgPerSec/c.MsgPerSec)
		}
	}
	return tw.Flush()
}

// optMs prints a CPU time in ms, or nothing for results from before it was measured.
func optMs(ms float64) string {
	if ms == 0 {
		return ""
	}
	return fmt.Sprintf("%.2f", ms)
}
