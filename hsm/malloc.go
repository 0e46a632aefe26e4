package hsm

/*
#include <malloc.h>

// keep_freed_heap raises glibc's trim threshold; 0 where the C library has no such setting.
static int keep_freed_heap(int bytes) {
#ifdef M_TRIM_THRESHOLD
	return mallopt(M_TRIM_THRESHOLD, bytes);
#else
	return 0;
#endif
}
*/
import "C"

import (
	"os"
	"strings"
	"sync"
)

// heapKeep is how much freed memory at the top of a C heap glibc may keep instead of handing it
// back to the kernel. A module working through a large body in 64 KB C_EncryptUpdate calls
// (SoftHSM2 copies each chunk into buffers of its own, and the pkcs11 binding allocates each
// chunk's output) frees more than glibc's default threshold of 128 KB at the top of its heap on
// every call, so glibc shrinks the heap and grows it again, and the pages come back zeroed: on
// the bench machine that is two thirds of a 1 MB message's encryption (BenchmarkEncrypt/cbc
// 10 MB: 47-57 ms with the default, 15.7-16.8 with 16 MB). What a heap keeps is memory it has
// used at its peak, so the bound on memory is unchanged.
const heapKeep = 16 << 20

var (
	heapOnce  sync.Once
	heapTuned bool // whether Open set glibc's trim threshold (tests)
)

// keepFreedHeap sets the threshold once per process, unless the operator tunes glibc's allocator
// through its environment, which then stands.
func keepFreedHeap() {
	heapOnce.Do(func() {
		if operatorTunesHeap(os.LookupEnv) {
			return
		}
		heapTuned = C.keep_freed_heap(C.int(heapKeep)) == 1
	})
}

func operatorTunesHeap(lookup func(string) (string, bool)) bool {
	if _, ok := lookup("MALLOC_TRIM_THRESHOLD_"); ok {
		return true
	}
	v, _ := lookup("GLIBC_TUNABLES")
	return strings.Contains(v, "glibc.malloc.trim_threshold")
}
