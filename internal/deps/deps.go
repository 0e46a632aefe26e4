package deps

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/ThalesGroup/crypto11"
	_ "github.com/digitorus/pkcs7"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/pkcs11"
	_ "golang.org/x/crypto/cryptobyte"
)
