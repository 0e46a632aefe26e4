//go:build benchpprof

package main

import (
	"net"
	"net/http"
	_ "net/http/pprof" // the profiling endpoints, in binaries built for bench/run.sh PPROF=1 only
	"os"
)

// With -tags benchpprof, APPLIANCE_PPROF=ADDR serves net/http/pprof on ADDR, so bench/run.sh
// can profile the daemon under load. Production builds do not contain this file.
func init() {
	addr := os.Getenv("APPLIANCE_PPROF")
	if addr == "" {
		return
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return
	}
	go http.Serve(l, nil)
}
