// Package ci tells tests whether they run in continuous integration, where a
// missing tool, privilege or device is a failure, not a skip.
package ci

import (
	"os"
	"testing"
)

// On reports whether the CI environment variable is set to anything at all:
// CI services set it to "true", "1", "True" or other values, and a guard
// that compared with one of them would silently skip under the others.
func On() bool { return os.Getenv("CI") != "" }

// Skipf skips the test, or under CI fails it: there the precondition a test
// is missing is a broken runner, not a reason to test less.
func Skipf(tb testing.TB, format string, args ...any) {
	tb.Helper()
	if On() {
		tb.Fatalf(format+" (CI is set: a failure, not a skip)", args...)
		return
	}
	tb.Skipf(format, args...)
}
