package metrics

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// FrontStats is what the SMTP front end's limits under load report: the
// daemon's wiring copies it from the front end, so this package imports
// nothing of it.
type FrontStats struct {
	Open          int               // connections open
	Trusted       int               // of Open, from trusted networks
	Stressed      bool              // the stress threshold is reached
	StressEntered uint64            // times stress began since start
	RefusedTotal  uint64            // connections refused at the global limit or the trusted reserve
	RefusedPerIP  uint64            // connections refused at a per-address limit
	RateClosed    uint64            // connections closed below the minimum transfer rate
	Shed          map[string]uint64 // MAILs refused with 451 4.3.2, per reason
}

var (
	frontConnsDesc = prometheus.NewDesc("appliance_smtp_connections",
		"SMTP connections open, by origin: trusted (trusted_networks) or other.", []string{"origin"}, nil)
	frontStressDesc = prometheus.NewDesc("appliance_smtp_stress",
		"1 while the front end is under stress (stress_connections reached: idle timeouts shortened).", nil, nil)
	frontStressTotalDesc = prometheus.NewDesc("appliance_smtp_stress_entered_total",
		"Times the front end entered stress since start.", nil, nil)
	frontRefusedDesc = prometheus.NewDesc("appliance_smtp_connections_refused_total",
		"Connections refused with 421 4.7.0 since start: limit is global (max_connections or the trusted reserve) or per_address.",
		[]string{"limit"}, nil)
	frontRateDesc = prometheus.NewDesc("appliance_smtp_rate_closed_total",
		"Connections closed with 421 4.4.2 below the minimum transfer rate since start.", nil, nil)
	frontShedDesc = prometheus.NewDesc("appliance_smtp_mail_shed_total",
		"MAIL commands refused with 451 4.3.2 by load shedding since start, by reason (spool_messages, spool_bytes, memory, hsm_backlog).",
		[]string{"reason"}, nil)
)

// ObserveFront registers the front end's gauges and counters, read from stats at every scrape;
// stats must be cheap and safe for concurrent use. Only the first call has an effect.
func (m *Metrics) ObserveFront(stats func() FrontStats) {
	if m == nil {
		return
	}
	m.frontOnce.Do(func() { m.reg.MustRegister(&frontCollector{stats: stats}) })
}

type frontCollector struct{ stats func() FrontStats }

func (c *frontCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{frontConnsDesc, frontStressDesc, frontStressTotalDesc, frontRefusedDesc, frontRateDesc, frontShedDesc} {
		ch <- d
	}
}

func (c *frontCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	ch <- prometheus.MustNewConstMetric(frontConnsDesc, prometheus.GaugeValue, float64(s.Trusted), "trusted")
	ch <- prometheus.MustNewConstMetric(frontConnsDesc, prometheus.GaugeValue, float64(s.Open-s.Trusted), "other")
	stressed := 0.0
	if s.Stressed {
		stressed = 1
	}
	ch <- prometheus.MustNewConstMetric(frontStressDesc, prometheus.GaugeValue, stressed)
	ch <- prometheus.MustNewConstMetric(frontStressTotalDesc, prometheus.CounterValue, float64(s.StressEntered))
	ch <- prometheus.MustNewConstMetric(frontRefusedDesc, prometheus.CounterValue, float64(s.RefusedTotal), "global")
	ch <- prometheus.MustNewConstMetric(frontRefusedDesc, prometheus.CounterValue, float64(s.RefusedPerIP), "per_address")
	ch <- prometheus.MustNewConstMetric(frontRateDesc, prometheus.CounterValue, float64(s.RateClosed))
	reasons := make([]string, 0, len(s.Shed))
	for r := range s.Shed {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		ch <- prometheus.MustNewConstMetric(frontShedDesc, prometheus.CounterValue, float64(s.Shed[r]), r)
	}
}
