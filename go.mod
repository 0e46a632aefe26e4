module appliance

go 1.26.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/ThalesGroup/crypto11 v1.6.2
	github.com/digitorus/pkcs7 v0.0.0-20250730155240-ffadbf3f398c
	github.com/emersion/go-message v0.18.2
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6
	github.com/emersion/go-smtp v0.25.1
	github.com/miekg/pkcs11 v1.1.2
	golang.org/x/crypto v0.59.0
)

require golang.org/x/term v0.48.0

require github.com/emersion/go-msgauth v0.7.0

require (
	github.com/Azure/go-ntlmssp v0.1.1 // indirect
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-asn1-ber/asn1-ber v1.5.8 // indirect
	github.com/go-ldap/ldap/v3 v3.4.15
	github.com/google/uuid v1.6.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/prometheus/client_golang v1.25.0
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/thales-e-security/pool v0.0.2
	golang.org/x/sys v0.50.0
	google.golang.org/protobuf v1.36.12 // indirect
)

// DATA is read in bulk: third_party/README.md.
replace github.com/emersion/go-smtp => ./third_party/go-smtp

// One C_Sign per signature and one C_WrapKey per wrap: third_party/README.md.
replace github.com/miekg/pkcs11 => ./third_party/pkcs11
