//go:build race

package smime

// raceEnabled: the race detector's sync.Pool drops a quarter of what is put back, at random, so
// tests that count the garbage of pooled code allow for it only in this build.
const raceEnabled = true
