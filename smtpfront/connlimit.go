package smtpfront

import (
	"net"
	"net/netip"
	"time"
)

// Connection limits with fairness, as Postfix has them.
//
// MaxConns bounds every connection together, so descriptors and memory are
// bounded however many clients knock: one more is refused with 421 4.7.0,
// written at once, and closed. Per address, a client outside TrustedNets
// gets MaxConnsPerIP; a trusted one (a local MTA handing over mail under
// content_filter, where every client is 127.0.0.1) gets
// MaxConnsPerTrustedIP, and only trusted clients may take the last
// ReservedTrustedConns slots, so a flood from outside cannot lock the MTA
// out.
//
// Stress: from StressConns open connections on, every read waits at most
// StressReadTimeout instead of ReadTimeout, and reads already waiting
// longer than that are cut short. Idle and slow connections thus go first,
// while a client that keeps sending (a working MTA) never waits that long
// for itself and keeps its slot. Stress ends when connections drop below
// StressConns again.

// Replies of the connection limits.
const (
	replyTooManyConns      = "421 4.7.0 too many connections, try again later"
	replyTooManyConnsPerIP = "421 4.7.0 too many connections from your address"
)

func (o *Options) setConnLimitDefaults() {
	if o.MaxConns == 0 {
		o.MaxConns = 500
	}
	if o.MaxConns < 0 {
		o.MaxConns = 0
	}
	if o.MaxConnsPerTrustedIP == 0 {
		o.MaxConnsPerTrustedIP = o.MaxConns
	}
	if o.ReservedTrustedConns == 0 {
		o.ReservedTrustedConns = o.MaxConns / 10
	}
	if o.StressConns == 0 {
		o.StressConns = o.MaxConns * 3 / 4
	}
	if o.ReservedTrustedConns < 0 {
		o.ReservedTrustedConns = 0
	}
	if o.StressReadTimeout == 0 {
		o.StressReadTimeout = 10 * time.Second
	}
	if o.StressReadTimeout < 0 {
		o.StressReadTimeout = o.ReadTimeout
	}
	if o.MinRateBytes == 0 {
		o.MinRateBytes = 5000
	}
	if o.MinRateInterval <= 0 {
		o.MinRateInterval = 10 * time.Second
	}
}

// isTrusted reports whether c comes from TrustedNets.
func (s *Server) isTrusted(c net.Conn) bool {
	if len(s.opts.TrustedNets) == 0 {
		return false
	}
	var a netip.Addr
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a = tcp.AddrPort().Addr().Unmap()
	} else if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		a = ap.Addr().Unmap()
	}
	for _, p := range s.opts.TrustedNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// admitLocked returns the reply refusing one more connection from ip, and
// why, or "" to let it in.
func (s *Server) admitLocked(ip string, trusted bool) (reply, why string) {
	o := &s.opts
	n := len(s.conns)
	switch {
	case o.MaxConns > 0 && n >= o.MaxConns:
		s.refusedTotal.Add(1)
		return replyTooManyConns, "global connection limit reached"
	case o.MaxConns > 0 && !trusted && n-s.trusted >= o.MaxConns-o.ReservedTrustedConns:
		s.refusedTotal.Add(1)
		return replyTooManyConns, "only the slots reserved for trusted networks are left"
	case trusted && o.MaxConnsPerTrustedIP > 0 && s.perIP[ip] >= o.MaxConnsPerTrustedIP:
		s.refusedPerIP.Add(1)
		return replyTooManyConnsPerIP, "too many from one trusted address"
	case !trusted && o.MaxConnsPerIP > 0 && s.perIP[ip] >= o.MaxConnsPerIP:
		s.refusedPerIP.Add(1)
		return replyTooManyConnsPerIP, "too many from one address"
	}
	return "", ""
}

// updateStressLocked sets the stress state from the connections open; on
// entering stress it returns the connections whose waiting reads are to be
// cut (to be done without s.mu).
func (s *Server) updateStressLocked() []*trackedConn {
	o := &s.opts
	on := o.StressConns > 0 && len(s.conns) >= o.StressConns
	if s.stressed.Swap(on) || !on {
		return nil
	}
	s.stressEntered.Add(1)
	cut := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		cut = append(cut, c)
	}
	return cut
}

// idleTimeout is the idle time a read gets now.
func (s *Server) idleTimeout() time.Duration {
	if s.stressed.Load() && s.opts.StressReadTimeout < s.opts.ReadTimeout {
		return s.opts.StressReadTimeout
	}
	return s.opts.ReadTimeout
}

// ConnStats is a snapshot of the front end's connections and what its
// limits refused, for metrics.
type ConnStats struct {
	Open          int    // connections open
	Trusted       int    // of Open, from TrustedNets
	Stressed      bool   // StressConns reached
	StressEntered uint64 // times stress began
	RefusedTotal  uint64 // refused at MaxConns or the trusted reserve
	RefusedPerIP  uint64 // refused at a per-address limit
	RateClosed    uint64 // closed below the minimum transfer rate
	Shed          map[string]uint64
}

// Stats returns the connection counts and limits' tallies.
func (s *Server) Stats() ConnStats {
	s.mu.Lock()
	st := ConnStats{Open: len(s.conns), Trusted: s.trusted}
	s.mu.Unlock()
	st.Stressed = s.stressed.Load()
	st.StressEntered = s.stressEntered.Load()
	st.RefusedTotal = s.refusedTotal.Load()
	st.RefusedPerIP = s.refusedPerIP.Load()
	st.RateClosed = s.rateClosed.Load()
	if s.opts.Load != nil {
		st.Shed = s.opts.Load.Counts()
	}
	return st
}
