// Package procs lends the Go runtime more Ps than it has cores while work that blocks in C
// runs beside Go work.
//
// A goroutine in a cgo call keeps its P until the runtime's monitor takes it back, 20 µs or
// more after the call began. A token's calls block in C (SoftHSM2 waits on a key object's lock
// and reads its file; a remote token waits on the network), so while a list expands, members'
// token calls hold the Ps and the Go work of the other members (hashing, encoding) waits with
// the cores idle. With twice the Ps a P-256 list expanded at 81 to 88% of its token's floor by
// the clock instead of 72 to 82% (bench/HISTORY.md). The daemon does not run this way all the
// time: for single messages the extra Ps cost 3 to 20% more CPU a message and no throughput.
package procs

import (
	"os"
	"runtime"
	"sync"
)

// factor is how many Ps Widen gives per P the runtime chose.
const factor = 2

var (
	mu    sync.Mutex
	users int
)

// Widen gives the runtime factor times its Ps until every caller that widened has called the
// release it got. It does nothing when the GOMAXPROCS environment variable fixes the Ps: the
// operator's number stands.
func Widen() (release func()) {
	if os.Getenv("GOMAXPROCS") != "" {
		return func() {}
	}
	mu.Lock()
	if users == 0 {
		runtime.GOMAXPROCS(factor * runtime.GOMAXPROCS(0))
	}
	users++
	mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			if users--; users == 0 {
				// Back to the runtime's own choice, which keeps following the machine's CPUs
				// and the cgroup's quota.
				runtime.SetDefaultGOMAXPROCS()
			}
		})
	}
}
