package daemon

import (
	"testing"

	"appliance/metrics"
)

// wantActive checks appliance_token_active{pair="card",token=token} in m's registry.
func wantActive(t *testing.T, m *metrics.Metrics, token string, want float64) {
	t.Helper()
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "appliance_token_active" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["pair"] == "card" && labels["token"] == token {
				if got := s.GetGauge().GetValue(); got != want {
					t.Errorf("appliance_token_active{pair=card,token=%s} = %v, want %v", token, got, want)
				}
				return
			}
		}
	}
	t.Errorf("no appliance_token_active{pair=card,token=%s}", token)
}
