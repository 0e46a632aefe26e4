package main

import (
	"appliance/hsm"
	"appliance/metrics"
)

// tokens registers appliance_token_active{pair,token} from the supervisor's failover pairs: which
// token of each pair does its work now. A daemon without a standby has no such series.
func (o *observer) tokens(s *hsm.Supervisor) {
	if o == nil || s == nil {
		return
	}
	o.m.ObserveTokens(func() []metrics.TokenState {
		pairs := s.Pairs()
		out := make([]metrics.TokenState, len(pairs))
		for i, p := range pairs {
			out[i] = metrics.TokenState{Pair: p.Pair, Token: p.Token, Active: p.Active}
		}
		return out
	})
}
