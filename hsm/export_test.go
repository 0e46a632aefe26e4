package hsm

import (
	"context"

	"github.com/miekg/pkcs11"
)

// SignerLookups counts the key pair lookups made for signers, so tests can tell a cached Signer
// from a fresh one.
func (t *Token) SignerLookups() uint64 { return t.lookups.Load() }

// PublicKeyImports counts the recipient public keys imported on the current connection.
func (t *Token) PublicKeyImports() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.conn == nil {
		return 0
	}
	return t.conn.imports.Load()
}

// RequireGCMForTest says whether the content role needs CKM_AES_GCM (it does in the appliance) and
// returns the previous setting. The run of the hsm tests against opencryptoki 3.8.1, whose software
// token has no AES-GCM, turns it off: the appliance rightly refuses that token for content
// (TestSecondImplementation checks so with it on), and the rest of the content path (key
// generation, AES-CBC, RSA wrap and unwrap) is still worth running there. Not for parallel tests.
func RequireGCMForTest(on bool) (was bool) {
	was = false
	var ms []uint
	for _, m := range contentMechanisms {
		if m == pkcs11.CKM_AES_GCM {
			was = true
			continue
		}
		ms = append(ms, m)
	}
	if on {
		ms = append(ms, pkcs11.CKM_AES_GCM)
	}
	contentMechanisms = ms
	return was
}

// OperatorTunesHeap and HeapTuned are malloc.go's decision and its outcome.
var OperatorTunesHeap = operatorTunesHeap

func HeapTuned() bool { return heapTuned }

// LimitPublicKeyCache bounds the current connection's cache of recipient public keys to n.
func (t *Token) LimitPublicKeyCache(n int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	t.conn.pubs.mu.Lock()
	t.conn.pubs.max = n
	t.conn.pubs.mu.Unlock()
}

// PublicKeyObjects counts the RSA public keys on the token that are session objects: the
// cache's, and any import a wrap has not yet destroyed.
func (t *Token) PublicKeyObjects() (int, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := t.conn
	s, err := c.pool.get(context.Background(), "count")
	if err != nil {
		return 0, err
	}
	defer c.pool.put(s, nil)
	hs, err := c.findObjects(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
	}, 1<<16)
	return len(hs), err
}
