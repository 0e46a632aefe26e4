package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// SecretKeys counts the AES secret key objects the token shows this process (session keys
// included), so tests can tell a key-encryption key was destroyed after its wrap.
func (t *Token) SecretKeys(ctx context.Context) (int, error) {
	n := 0
	err := t.withSession(ctx, "count secret keys", func(c *conn, s pkcs11.SessionHandle) error {
		hs, err := c.findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}, 1<<16)
		n = len(hs)
		return err
	})
	return n, err
}
