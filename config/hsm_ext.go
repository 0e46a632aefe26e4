package config

import "time"

// HSMHealth is the part of [hsm] that says how the daemon lives with a token
// that comes and goes. It is embedded in [HSM], so its keys sit directly
// under [hsm].
type HSMHealth struct {
	// RequireUp makes the front end answer 451 4.3.0 at MAIL while the
	// token is unavailable. Off (the default), mail is accepted while the
	// spool has room and sealed once the token is back.
	RequireUp bool `toml:"require_up"`
	// ReconnectMax caps the wait between reconnection attempts after the
	// token was lost; 0 means DefaultReconnectMax.
	ReconnectMax time.Duration `toml:"reconnect_max"`
}

// DefaultReconnectMax is the longest wait between reconnection attempts
// when hsm.reconnect_max is not set.
const DefaultReconnectMax = 30 * time.Second

// ReconnectWait is hsm.reconnect_max or its default.
func (h HSMHealth) ReconnectWait() time.Duration {
	if h.ReconnectMax == 0 {
		return DefaultReconnectMax
	}
	return h.ReconnectMax
}

func (c *Config) validateHSMHealth(v *validator) {
	// Below 100ms the loop would spin against a token that is not coming
	// back; above 10m an operator's fix would go unnoticed for too long.
	durationRange(v, "hsm.reconnect_max", c.HSM.ReconnectMax, 100*time.Millisecond, 10*time.Minute)
}
