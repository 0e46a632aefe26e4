package delivery

import (
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
)

// scriptedHop is a next hop on a loopback port that serves one connection: it sends greeting
// (as it is: its lines end in CRLF) and hands each command line, with its verb in upper case,
// to answer, until answer returns false or the client goes. It closes when the test ends.
func scriptedHop(t *testing.T, greeting string, answer func(tp *textproto.Conn, verb, line string) bool) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tp := textproto.NewConn(c)
		if _, err := io.WriteString(c, greeting); err != nil {
			return
		}
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			if !answer(tp, strings.ToUpper(strings.SplitN(line, " ", 2)[0]), line) {
				return
			}
		}
	}()
	return l.Addr().String()
}
