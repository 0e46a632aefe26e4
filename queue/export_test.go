package queue

// SetRecycle turns the reuse of finished files on or off, for benchmarks.
func SetRecycle(on bool) { recycleFiles = on }
