// Package hsm owns every PKCS#11 call of the appliance: loading the module, logging in, a bounded
// session pool, signing, and the content-key work of S/MIME sealing, all on the token.
//
// # Two libraries, one module
//
// crypto11 finds and generates key pairs; it has no key wrapping and hides its handles, so
// miekg/pkcs11 does the rest: session AES keys (CEKs), chunked encryption, C_WrapKey and
// C_UnwrapKey, and the signatures themselves. A found key's handle signs ECDSA and RSA PKCS#1
// v1.5 with C_SignInit and C_Sign (in one call into C: InitAndSign, an addition to the carried
// binding) on a session pool of its own (as many sessions as crypto11 had for signing), because crypto11's signer costs a context, a timer and math/big around
// those two calls, which a mail list pays once per member; RSA-PSS keeps crypto11's signer.
// Both load the same module. crypto11 initialises it and logs in first; miekg then tolerates
// CKR_CRYPTOKI_ALREADY_INITIALIZED and its sessions share the login. Only crypto11 finalizes.
// [Token.Reconnect] closes both in that order and opens them again. miekg/pkcs11 is the copy in
// third_party/pkcs11, whose C_Sign and C_WrapKey make one call, not a length query first.
// Opening a token raises glibc's trim threshold once per process (malloc.go).
//
// # Content keys
//
// [Token.GenerateCEK] makes an AES-256 session object that is sensitive and extractable only by
// wrapping, so its value never enters process memory. Session objects die with the session that
// made them, so the pool never closes a session while the Token is connected; a [CEK] is valid
// until [CEK.Destroy], Close or Reconnect. Content is encrypted in 64 KB C_EncryptUpdate chunks
// (single-part calls are about 3x slower on large bodies). Wrapping imports the recipient's public
// key as a CKA_TOKEN=false session object, on a session of its own that lives as long as the
// connection, and keeps it for that recipient's later wraps (up to 4,096 keys; a full cache lets
// a new key in one time in 8, in the place of one chosen at random, so that a list walked in
// member order keeps most of its cached keys and recipients who keep coming back still get in).
// For an EC recipient, [CEK.WrapAES]
// takes the key-encryption key the process derived by ECDH, creates it as a wrap-only session
// key, wraps the CEK with CKM_AES_KEY_WRAP and destroys it again. *CEK satisfies the cms
// package's ContentKey interface without either package importing the other.
//
// # Caches
//
// Per message the daemon names its signing key and wraps for recipients it has mostly seen
// before, so [Token.Signer] caches its answer per key URI and wrapping keeps imported public
// keys. Both belong to one connection: Reconnect and Close drop them, and a Sign that finds its
// key or handle gone drops that Signer, so a key replaced on the token is looked up afresh.
//
// # OAEP
//
// Tokens differ in the OAEP hashes they take (SoftHSM 2.6: SHA-1 only). Open probes SHA-256, then
// SHA-1, by wrapping a throwaway key, and [Token.OAEPHash] reports the strongest that worked.
//
// # Roles and mechanisms
//
// A deployment may have several tokens: a smartcard that can only sign beside an HSM that does
// everything. [Config.Roles] says what a token is for; Open asks it for its mechanism list
// (C_GetMechanismList) and refuses it, with [ErrMechanism] naming the token and the mechanism,
// when a role needs what it lacks. [Token.Signer] does the same for the one mechanism a key needs
// (CKM_RSA_PKCS, CKM_RSA_PKCS_PSS or CKM_ECDSA). A key with CKA_ALWAYS_AUTHENTICATE signs through
// miekg with a context-specific login before each C_Sign, since crypto11 cannot. [Config.Select]
// picks a token by the token attributes of a PKCS#11 URI (label or serial; manufacturer and model
// must then match).
//
// # Errors
//
// Every error is an [*Error] with a sentinel Kind for errors.Is. A vanished token, lost handles or
// a busy pool are temporary ([IsTemporary]): the caller defers the work and calls Reconnect. A
// wrong PIN, a missing module or token, or a malformed wrapped key are not. Errors name keys by
// their URI and never contain the PIN. Only the [Supervisor] logs, through the slog.Logger it is
// given.
//
// # Supervisor
//
// [NewSupervisor] is the one token layer the daemon uses: a watch per token reconnects it with
// backoff, probes it when idle and makes operations fail fast with a temporary [UnavailableError]
// while it is down; signing keys go to the token their URI picks, content keys to the content
// token (or its fallback), and a token's work to its standby while it is down.
//
// Keys are named by RFC 7512 PKCS#11 URIs ([ParseURI]); a PIN inside a URI is refused.
package hsm
