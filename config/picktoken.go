package config

import (
	"fmt"
	"strings"
)

// PickToken is the configured token called name, or the only one when name is empty. Its error
// says which names there are to pick from.
func (c *Config) PickToken(name string) (Token, error) {
	all := c.TokenList()
	if name == "" {
		if len(all) == 1 {
			return all[0], nil
		}
		names := make([]string, len(all))
		for i, t := range all {
			names[i] = t.Name
		}
		return Token{}, fmt.Errorf("the configuration has %d tokens; pick one with -token (%s)", len(all), strings.Join(names, ", "))
	}
	t, ok := c.FindToken(name)
	if !ok {
		return Token{}, fmt.Errorf("no token named %q in the configuration", name)
	}
	return t, nil
}
