// Package hsmkeys joins hsm and cms where they meet: hsm hands out *hsm.CEK, cms takes a
// cms.ContentKey, and neither imports the other. The daemon, the benchmarks and the tests that
// seal on a real token all use this one adapter.
package hsmkeys

import (
	"context"
	"crypto"

	"appliance/cms"
	"appliance/hsm"
)

var _ cms.ContentKey = (*hsm.CEK)(nil)

// Token is an *hsm.Token whose content keys are cms.ContentKeys (the pipeline's token).
type Token struct{ *hsm.Token }

// NewContentKey makes a content key on the token. A failure returns a nil interface, not a nil
// *hsm.CEK inside one.
func (t Token) NewContentKey(ctx context.Context) (cms.ContentKey, error) {
	k, err := t.GenerateCEK(ctx)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Signer finds the signing key keyURI names.
func (t Token) Signer(ctx context.Context, keyURI string) (crypto.Signer, error) {
	return t.Token.Signer(ctx, keyURI)
}
