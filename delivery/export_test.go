package delivery

// TailBytes is how many bytes have gone from spool files to sockets as they were (sendfile).
func TailBytes() int64 { return tailBytes.Load() }

// ScriptedHop is scriptedHop, for the package's external tests.
var ScriptedHop = scriptedHop
