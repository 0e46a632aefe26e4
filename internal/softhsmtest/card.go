package softhsmtest

import (
	"context"
	"testing"

	"appliance/hsm"
)

// CardMechanisms is a sign-only card: RSA PKCS#1 v1.5 signing and key generation, nothing else.
const CardMechanisms = "CKM_RSA_PKCS,CKM_RSA_PKCS_KEY_PAIR_GEN,CKM_SHA256_RSA_PKCS"

// StartCard serves a sign-only SoftHSM2 token labelled "card", in its own process behind
// `p11-kit server`, with an RSA key "carol" on it, and points this process's p11-kit client at it.
func StartCard(t *testing.T, env *Env) *Remote {
	t.Helper()
	r := env.Serve(t, env.Card(t, "card", CardMechanisms), "card")
	t.Setenv("P11_KIT_SERVER_ADDRESS", r.Address)
	tok, err := hsm.Open(hsm.Config{Module: r.Module, TokenLabel: "card", PIN: PIN, Roles: hsm.RoleSign})
	if err != nil {
		t.Fatalf("open card: %v", err)
	}
	defer tok.Close()
	if _, err := tok.GenerateKeyPair(context.Background(), "carol", hsm.RSA2048); err != nil {
		t.Fatalf("generate carol's key on the card: %v", err)
	}
	return r
}
