// Package retry decides whether a failure is temporary (the work waits and is tried again) or
// permanent (the sender is told, by a 5xx reply or a DSN). It is the one place that decides:
// an error carries the answer as data, a Temporary() bool method (directory, hsm and delivery
// errors have one; Temporary marks any other), and IsTemporary reads it for everyone (the
// queue's retries, the front end's replies, the metrics' results).
package retry

import "errors"

// Temporary marks err as temporary; nil stays nil.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return temporary{err}
}

type temporary struct{ error }

func (temporary) Temporary() bool { return true }
func (e temporary) Unwrap() error { return e.error }

// IsTemporary reports whether err says a retry may help: the first error in its chain with a
// Temporary() bool method decides. An error without one is temporary only when def says so:
// the queue takes a sealing error without one as permanent (the input will not change) and a
// delivery error without one as temporary (retrying is safer than bouncing).
func IsTemporary(err error, def bool) bool {
	var t interface{ Temporary() bool }
	if errors.As(err, &t) {
		return t.Temporary()
	}
	return def
}
