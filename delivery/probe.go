package delivery

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// Reporter takes the lines of a check, one per step: passed, passed with a warning, failed.
type Reporter interface {
	OK(what, detail string)
	Warn(what, detail string)
	Fail(what string, err error)
}

// CheckNextHop greets nextHop as delivery does, each step reported to r: its 220, EHLO as
// hostname, and STARTTLS with the same verification (the host name of nextHop against the
// system roots). Each network step is bounded by timeout. A next hop that offers no STARTTLS is
// a warning: packages go to it in clear text, which is fine on loopback.
func CheckNextHop(r Reporter, nextHop, hostname string, timeout time.Duration) {
	what := "next hop " + nextHop
	conn, err := net.DialTimeout("tcp", nextHop, timeout)
	if err != nil {
		r.Fail(what, err)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	tp := textproto.NewConn(conn)
	_, greeting, err := tp.ReadResponse(220)
	if err != nil {
		r.Fail(what, fmt.Errorf("greeting: %w", err))
		return
	}
	first, _, _ := strings.Cut(greeting, "\n")
	r.OK(what, "greets 220 "+first)
	id, err := tp.Cmd("EHLO %s", hostname)
	if err != nil {
		r.Fail(what, err)
		return
	}
	tp.StartResponse(id)
	_, ehlo, err := tp.ReadResponse(250)
	tp.EndResponse(id)
	if err != nil {
		r.Fail(what, fmt.Errorf("EHLO %s: %w", hostname, err))
		return
	}
	starttls := false
	for _, l := range strings.Split(ehlo, "\n") {
		starttls = starttls || strings.EqualFold(strings.TrimSpace(l), "STARTTLS")
	}
	if !starttls {
		r.Warn(what, "no STARTTLS offered: packages go in clear text to it (fine on loopback)")
		_, _ = tp.Cmd("QUIT")
		return
	}
	if _, err := tp.Cmd("STARTTLS"); err != nil {
		r.Fail(what+" STARTTLS", err)
		return
	}
	if _, _, err := tp.ReadResponse(220); err != nil {
		r.Fail(what+" STARTTLS", err)
		return
	}
	host, _, _ := net.SplitHostPort(nextHop)
	tc := tls.Client(conn, &tls.Config{ServerName: host})
	if err := tc.Handshake(); err != nil {
		r.Fail(what+" STARTTLS", fmt.Errorf("handshake: %w", err))
		return
	}
	st := tc.ConnectionState()
	r.OK(what+" STARTTLS", fmt.Sprintf("%s, certificate %q verified", tls.VersionName(st.Version), st.PeerCertificates[0].Subject.String()))
	_, _ = fmt.Fprintf(tc, "QUIT\r\n")
}
