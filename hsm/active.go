package hsm

import "sort"

// PairState is one token of a failover pair (a token with a standby) and whether it is the one
// doing the pair's work now.
type PairState struct {
	Pair   string // the primary's name: the token keys and the configuration name
	Token  string // the primary or its standby
	Active bool
}

// Pairs says, for every token with a standby, which of the two is doing its work now, the way the
// next operation would choose: the primary while it is up, else the standby while that is up. A
// switch seen here is logged ("token failover", "token failback") like one an operation meets, so
// a scrape and the log agree. Two entries per pair, primaries in name order.
func (s *Supervisor) Pairs() []PairState {
	primaries := make([]string, 0, len(s.standby))
	for p := range s.standby {
		primaries = append(primaries, p)
	}
	sort.Strings(primaries)
	out := make([]PairState, 0, 2*len(primaries))
	for _, p := range primaries {
		_, use := s.pick(p)
		out = append(out, PairState{Pair: p, Token: p, Active: use == p},
			PairState{Pair: p, Token: s.standby[p], Active: use == s.standby[p]})
	}
	return out
}
