package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// TokenState is one token of a failover pair as the daemon's token supervisor reports it: the
// daemon's wiring copies it from hsm.Supervisor.Pairs, so this package imports nothing of hsm.
type TokenState struct {
	Pair   string // the primary's configured name
	Token  string // the primary or its standby
	Active bool   // doing the pair's work now
}

var tokenActiveDesc = prometheus.NewDesc("appliance_token_active",
	"1 for the token of a failover pair ([[token]] with standby) doing the pair's work now, 0 for the other; pair is the primary's name.",
	[]string{"pair", "token"}, nil)

// ObserveTokens registers appliance_token_active{pair,token}, read from states at every scrape;
// states must be safe for concurrent use. Labels are configured token names, a fixed set. Only the
// first call has an effect.
func (m *Metrics) ObserveTokens(states func() []TokenState) {
	if m == nil {
		return
	}
	var already prometheus.AlreadyRegisteredError
	if err := m.reg.Register(&tokenCollector{states: states}); err != nil && !errors.As(err, &already) {
		panic(err)
	}
}

type tokenCollector struct{ states func() []TokenState }

func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- tokenActiveDesc }

func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.states() {
		v := 0.0
		if s.Active {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(tokenActiveDesc, prometheus.GaugeValue, v, s.Pair, s.Token)
	}
}
