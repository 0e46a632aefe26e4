package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// SecretKeysForTest counts the secret-key objects a session of this Token sees (session objects
// of every session of the process, and the token's own), so tests can tell that intermediate keys
// were destroyed.
func (t *Token) SecretKeysForTest(ctx context.Context) (int, error) {
	var n int
	err := t.withSession(ctx, "count secret keys", func(c *conn, s pkcs11.SessionHandle) error {
		hs, err := c.findObjects(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY)}, 10000)
		n = len(hs)
		return err
	})
	return n, err
}
