package config

// Prometheus metrics, /healthz and /readyz on a listener of their own; off while listen is empty.
// It is separate from the SMTP port so that a firewall rule or a loopback address can keep it
// away from mail clients: /readyz names failing parts.
type Metrics struct {
	// The listener, e.g. "127.0.0.1:9464". /readyz is 503 while the HSM is down, the spool is
	// not writable, or the next hop was not reachable recently; keep it off public networks.
	// Value: host:port
	// Example: "127.0.0.1:9464"
	Listen string `toml:"listen"`
}

// Enabled reports whether the metrics listener is configured.
func (m Metrics) Enabled() bool { return m.Listen != "" }

func (c *Config) validateMetrics(v *validator) {
	if !c.Metrics.Enabled() {
		return
	}
	if err := checkHostPort(c.Metrics.Listen, true); err != nil {
		v.add("metrics.listen", ErrInvalid, "%q: %v", c.Metrics.Listen, err)
		return
	}
	// Port 0 means "any free port" on each listener, so only a fixed port can collide.
	if c.Metrics.Listen == c.SMTP.Listen && !hasPortZero(c.Metrics.Listen) {
		v.add("metrics.listen", ErrConflict, "%q is smtp.listen too; give the metrics listener its own port", c.Metrics.Listen)
	}
}

func hasPortZero(hostport string) bool {
	n := len(hostport)
	return n >= 2 && hostport[n-2:] == ":0"
}
