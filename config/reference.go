package config

import _ "embed"

//go:generate go run appliance/internal/configref/gen

// Reference describes every table and key of the file, made from the types of this package and
// their doc comments by `go generate ./config/` (which also writes deploy/appliance.toml);
// `appliance help config` prints it. A test fails when it is out of date.
//
//go:embed reference.txt
var Reference string
