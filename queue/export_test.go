package queue

// SetRecycle turns the reuse of finished files on or off, for benchmarks.
func SetRecycle(on bool) { recycleFiles = on }

// CommitSyncs is how many commits have synced so far.
func CommitSyncs() int64 { return commitSyncs.Load() }
