package main

import (
	"testing"

	"appliance/internal/softhsmtest"
)

// The TLS pair and the sign-only card are softhsmtest's, shared with package daemon's tests.

type testPair = softhsmtest.TLSPair

func newTestPair(t *testing.T, serial int64) testPair { return softhsmtest.NewTLSPair(t, serial) }

func writeTestFile(t *testing.T, path string, b []byte) { softhsmtest.WriteFile(t, path, b) }

func startCard(t *testing.T, env *softhsmtest.Env) *softhsmtest.Remote {
	return softhsmtest.StartCard(t, env)
}
