package e2e

import (
	"os"
	"testing"

	"appliance/internal/softhsmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	softhsmtest.Cleanup()
	Cleanup()
	os.Exit(code)
}
