package hsm

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
