package daemon

import (
	"os"
	"testing"

	"appliance/internal/interop"
	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	interop.Cleanup()
	softhsmtest.Cleanup()
	os.Exit(code)
}
