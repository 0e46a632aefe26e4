package hsm_test

import (
	"os"
	"testing"

	"appliance/hsm"
)

// TestOpenKeepsFreedHeap: opening a token sets glibc's trim threshold (BenchmarkEncrypt/cbc shows
// what it is worth), and an operator's own setting in the environment stands.
func TestOpenKeepsFreedHeap(t *testing.T) {
	if hsm.OperatorTunesHeap(func(string) (string, bool) { return "", false }) {
		t.Fatal("an empty environment counted as the operator's setting")
	}
	for _, env := range []map[string]string{
		{"MALLOC_TRIM_THRESHOLD_": "131072"},
		{"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.trim_threshold=1048576"},
	} {
		if !hsm.OperatorTunesHeap(func(k string) (string, bool) { v, ok := env[k]; return v, ok }) {
			t.Errorf("%v: the operator's setting is overridden", env)
		}
	}
	if hsm.OperatorTunesHeap(func(k string) (string, bool) {
		return map[string]string{"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}[k], k == "GLIBC_TUNABLES"
	}) {
		t.Error("a tunable other than the trim threshold kept the appliance's")
	}
	if hsm.OperatorTunesHeap(os.LookupEnv) {
		t.Skip("this test's environment sets glibc's trim threshold")
	}
	open(t, nil)
	if !hsm.HeapTuned() {
		t.Fatal("Open did not set glibc's trim threshold")
	}
}
