package delivery

// TailBytes is how many bytes have gone from spool files to sockets as they were (sendfile).
func TailBytes() int64 { return tailBytes.Load() }
