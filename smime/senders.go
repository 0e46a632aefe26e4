package smime

import (
	"bytes"
	"errors"
	"fmt"
	"net/mail"
)

// HeaderSenders are the addresses of msg's From field and, when it has one, its Sender field:
// the identities a reader's mail client shows beside the signature.
func HeaderSenders(msg []byte) ([]string, error) {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return nil, fmt.Errorf("failed to read the message header: %w", err)
	}
	from, err := m.Header.AddressList("From")
	if err != nil {
		return nil, fmt.Errorf("malformed From header: %w", err)
	}
	if len(from) == 0 {
		return nil, errors.New("message has no From header")
	}
	if m.Header.Get("Sender") != "" {
		sender, err := m.Header.AddressList("Sender")
		if err != nil {
			return nil, fmt.Errorf("malformed Sender header: %w", err)
		}
		from = append(from, sender...)
	}
	out := make([]string, len(from))
	for i, a := range from {
		out[i] = a.Address
	}
	return out, nil
}
