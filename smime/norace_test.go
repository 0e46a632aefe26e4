//go:build !race

package smime

// raceEnabled is false: sync.Pool keeps what is put back until a garbage collection.
const raceEnabled = false
