package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; it is 100 on every Linux port Go
// supports.
const clockTicks = 100

// procTree watches a process and its descendants (Postfix is a master with many children, the
// appliance one process): peak resident memory as the largest sampled sum of Pss (proportional
// set size: a page shared by k processes counts 1/k in each, so Postfix's dozens of daemons do
// not count their shared libraries dozens of times; for one process it is its RSS), and CPU
// time as the change of utime+stime+cutime+cstime summed over the tree. A child that exits
// between samples is reaped by its parent, whose cutime/cstime then carry its time, so nothing
// is lost as long as the root stays alive.
type procTree struct {
	root int

	mu      sync.Mutex
	peakRSS int64 // bytes
	stop    chan struct{}
	done    chan struct{}
	cpu0    time.Duration
}

// rescanEvery is how many memory samples share one scan of /proc for the tree's members: the
// scan reads every process's stat, which on a busy machine costs the load generator more than
// the samples (the CPU time needs no sampling: it is summed at the start and at the end).
const rescanEvery = 10

func watchTree(root int, every time.Duration) (*procTree, error) {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", root)); err != nil {
		return nil, fmt.Errorf("failed to watch process %d: %w", root, err)
	}
	t := &procTree{root: root, stop: make(chan struct{}), done: make(chan struct{})}
	var members []int
	t.cpu0, members = t.scan()
	go func() {
		defer close(t.done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for n := 1; ; n++ {
			select {
			case <-t.stop:
				return
			case <-tk.C:
				if n%rescanEvery == 0 {
					_, members = t.scan()
				} else {
					t.sample(members)
				}
			}
		}
	}()
	return t, nil
}

// Stop ends sampling and returns the peak RSS in bytes and the CPU time used since the start.
func (t *procTree) Stop() (int64, time.Duration) {
	close(t.stop)
	<-t.done
	cpu, _ := t.scan()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.peakRSS, cpu - t.cpu0
}

// scan finds the tree's processes, samples their memory and returns the tree's CPU time so far.
func (t *procTree) scan() (time.Duration, []int) {
	var cpu time.Duration
	var pids []int
	for _, p := range readProcs().tree(t.root) {
		cpu += p.cpu
		pids = append(pids, p.pid)
	}
	t.sample(pids)
	return cpu, pids
}

// sample updates the peak with the summed memory of pids.
func (t *procTree) sample(pids []int) {
	var rss int64
	for _, pid := range pids {
		rss += memory(pid)
	}
	t.mu.Lock()
	t.peakRSS = max(t.peakRSS, rss)
	t.mu.Unlock()
}

type procInfo struct {
	pid, ppid int
	cpu       time.Duration
}

type procTable map[int]procInfo

func (pt procTable) tree(root int) []procInfo {
	children := map[int][]int{}
	for _, p := range pt {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []procInfo
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if p, ok := pt[pid]; ok {
			out = append(out, p)
		}
		queue = append(queue, children[pid]...)
	}
	return out
}

func readProcs() procTable {
	pt := procTable{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		p, ok := parseStat(stat)
		if !ok {
			continue
		}
		p.pid = pid
		pt[pid] = p
	}
	return pt
}

// memory is the Pss of one process (its RSS where smaps_rollup is missing). It is read only
// for the watched tree: the kernel walks a process's page tables for smaps_rollup, and doing
// that for every process on the machine ten times a second cost the load generator more CPU
// than its sink (on a busy 2-core machine, a fifth of a core taken from the relay under test).
func memory(pid int) int64 {
	d := "/proc/" + strconv.Itoa(pid)
	if rollup, err := os.ReadFile(d + "/smaps_rollup"); err == nil {
		return memField(rollup, "Pss:")
	}
	if status, err := os.ReadFile(d + "/status"); err == nil {
		return memField(status, "VmRSS:")
	}
	return 0
}

// parseStat reads ppid and the four CPU times from /proc/PID/stat. The command name in
// parentheses may hold spaces, so fields are counted after the last ')'.
func parseStat(stat []byte) (procInfo, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime..cstime are fields 14..17.
	if len(f) < 15 {
		return procInfo{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	var ticks int64
	for _, s := range f[11:15] {
		v, _ := strconv.ParseInt(s, 10, 64)
		ticks += v
	}
	return procInfo{ppid: ppid, cpu: time.Duration(ticks) * time.Second / clockTicks}, true
}

// memField reads a "Name:   N kB" line of /proc/PID/status or smaps_rollup, in bytes.
func memField(text []byte, name string) int64 {
	for line := range bytes.SplitSeq(text, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(name)); ok {
			f := strings.Fields(string(v))
			if len(f) > 0 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}
