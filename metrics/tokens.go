package metrics

import "appliance/hsm"

// Tokens registers appliance_token_active{pair,token} from the supervisor's failover pairs: which
// token of each pair does its work now, read on each scrape so that the gauge and the failover
// log lines agree. A daemon without a standby has no such series.
func (o *Observer) Tokens(s *hsm.Supervisor) {
	if o == nil || s == nil {
		return
	}
	o.m.ObserveTokens(func() []TokenState {
		pairs := s.Pairs()
		out := make([]TokenState, len(pairs))
		for i, p := range pairs {
			out[i] = TokenState{Pair: p.Pair, Token: p.Token, Active: p.Active}
		}
		return out
	})
}

// Metrics is the registry the observer writes to.
func (o *Observer) Metrics() *Metrics { return o.m }
