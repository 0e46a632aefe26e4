package hsm

import (
	"context"
	"errors"
	"strings"

	"github.com/miekg/pkcs11"
	"github.com/thales-e-security/pool"
)

// Sentinels for errors.Is. Every error this package returns is an *Error whose Kind is one of
// these (or context.Canceled), so callers can sort failures without parsing text.
var (
	// ErrModule: the PKCS#11 library could not be loaded or initialised (wrong path, missing
	// SOFTHSM2_CONF, ...). Fix the configuration.
	ErrModule = errors.New("failed to open module")
	// ErrTokenNotFound: no token with the configured label is present.
	ErrTokenNotFound = errors.New("token not found")
	// ErrPINIncorrect: the token refused the PIN (or it is locked or expired).
	ErrPINIncorrect = errors.New("PIN rejected by the token")
	// ErrPoolExhausted: every session was busy for the whole wait. Temporary.
	ErrPoolExhausted = errors.New("no HSM session free")
	// ErrTokenGone: the token vanished or its state was lost at run time (device removed,
	// handles invalid, not reconnected yet). Temporary: defer the work and call Reconnect.
	ErrTokenGone = errors.New("token unavailable")
	// ErrClosed: the Token was closed.
	ErrClosed = errors.New("token closed")
	// ErrBadURI: a key name is not a PKCS#11 URI this package accepts.
	ErrBadURI = errors.New("invalid PKCS#11 URI")
	// ErrKeyNotFound: no object on the token matches.
	ErrKeyNotFound = errors.New("key not found")
	// ErrAmbiguousKey: more than one key matches a URI that should name one.
	ErrAmbiguousKey = errors.New("more than one key matches")
	// ErrKeyExists: a key with that label already exists.
	ErrKeyExists = errors.New("key already exists")
	// ErrCertificateNotFound: no certificate object matches.
	ErrCertificateNotFound = errors.New("certificate not found")
	// ErrCertificateMismatch: a certificate's public key is not the key's.
	ErrCertificateMismatch = errors.New("certificate does not match the key")
	// ErrOAEPHash: the token cannot do RSA-OAEP with the requested hash.
	ErrOAEPHash = errors.New("OAEP hash not supported by the token")
	// ErrUnwrap: a wrapped key was refused (empty, garbage, wrong key). Permanent: the input
	// is bad, retrying will not help.
	ErrUnwrap = errors.New("wrapped key rejected")
	// ErrKeyDestroyed: a CEK was used after Destroy.
	ErrKeyDestroyed = errors.New("content key destroyed")
	// ErrInvalidArgument: a caller passed an impossible argument (bad IV length, nil key, ...).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotPermitted: the key's attributes forbid the operation (for example CKA_UNWRAP false).
	ErrNotPermitted = errors.New("key not permitted for this operation")
	// ErrMechanism: the token lacks a mechanism a role or a key needs (a card that cannot make
	// AES keys asked for content keys, say). The cause is a *MechanismError naming both. Fix the
	// configuration or the token.
	ErrMechanism = errors.New("mechanism not supported by the token")
	// ErrToken: the token refused the operation for another reason; Code says which.
	ErrToken = errors.New("operation refused by the token")
)

// Error is what every failing call returns. Op says what was being done, with its inputs quoted,
// Kind sorts the failure, Err is the cause (often a pkcs11.Error). The PIN never appears in it.
type Error struct {
	Op   string
	Kind error
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("failed to ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(e.Kind.Error())
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap exposes both the sentinel and the cause to errors.Is and errors.As.
func (e *Error) Unwrap() []error {
	if e.Err == nil {
		return []error{e.Kind}
	}
	return []error{e.Kind, e.Err}
}

// Temporary reports whether retrying later (after Reconnect, or when sessions free up) can
// succeed. The queue defers sealing on these instead of bouncing the message.
func (e *Error) Temporary() bool {
	return e.Kind == ErrTokenGone || e.Kind == ErrPoolExhausted
}

// Code returns the PKCS#11 return value behind the error, if there is one.
func (e *Error) Code() (uint, bool) {
	var p pkcs11.Error
	if errors.As(e.Err, &p) {
		return uint(p), true
	}
	return 0, false
}

// IsTemporary reports whether err, anywhere in its chain, is a temporary HSM failure.
func IsTemporary(err error) bool {
	for _, e := range chain(err) {
		if x, ok := e.(interface{ Temporary() bool }); ok && x.Temporary() {
			return true
		}
	}
	return false
}

// chain flattens err's tree; errors.As would stop at the first Temporary, which may say false
// while a deeper one says true.
func chain(err error) []error {
	if err == nil {
		return nil
	}
	out := []error{err}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, chain(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, chain(e)...)
		}
	}
	return out
}

// goneCodes mean the token, its sessions or its objects disappeared under us: the work can be
// retried once the token is back. CKR_GENERAL_ERROR is here because SoftHSM and others report a
// vanished object store that way.
var goneCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_OBJECT_HANDLE_INVALID:    true,
	pkcs11.CKR_KEY_HANDLE_INVALID:       true,
	pkcs11.CKR_SESSION_HANDLE_INVALID:   true,
	pkcs11.CKR_SESSION_CLOSED:           true,
	pkcs11.CKR_TOKEN_NOT_PRESENT:        true,
	pkcs11.CKR_TOKEN_NOT_RECOGNIZED:     true,
	pkcs11.CKR_DEVICE_REMOVED:           true,
	pkcs11.CKR_DEVICE_ERROR:             true,
	pkcs11.CKR_DEVICE_MEMORY:            true,
	pkcs11.CKR_SLOT_ID_INVALID:          true,
	pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED: true,
	pkcs11.CKR_USER_NOT_LOGGED_IN:       true,
	pkcs11.CKR_GENERAL_ERROR:            true,
	pkcs11.CKR_SESSION_COUNT:            true,
	pkcs11.CKR_FUNCTION_CANCELED:        true,
}

var pinCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_PIN_INCORRECT: true,
	pkcs11.CKR_PIN_LOCKED:    true,
	pkcs11.CKR_PIN_EXPIRED:   true,
	pkcs11.CKR_PIN_INVALID:   true,
	pkcs11.CKR_PIN_LEN_RANGE: true,
}

var notPermittedCodes = map[pkcs11.Error]bool{
	pkcs11.CKR_KEY_FUNCTION_NOT_PERMITTED: true,
	pkcs11.CKR_KEY_NOT_WRAPPABLE:          true,
	pkcs11.CKR_KEY_UNEXTRACTABLE:          true,
	pkcs11.CKR_KEY_TYPE_INCONSISTENT:      true,
}

// fail builds the *Error for op from any cause, sorting it by what the cause says.
func fail(op string, err error) error {
	var he *Error
	if errors.As(err, &he) {
		return &Error{Op: op, Kind: he.Kind, Err: he.Err}
	}
	return &Error{Op: op, Kind: kindOf(err), Err: err}
}

func kindOf(err error) error {
	var p pkcs11.Error
	// crypto11 reports module and token trouble with unexported errors; its text is the only
	// handle on them. They come first: a CKR_GENERAL_ERROR from C_Initialize (no SOFTHSM2_CONF)
	// is a configuration fault, not a token lost at run time.
	msg := err.Error()
	switch {
	case errors.As(err, &p) && pinCodes[p]:
		return ErrPINIncorrect
	case strings.Contains(msg, "failed to open module"), strings.Contains(msg, "failed to initialize module"):
		return ErrModule
	case strings.Contains(msg, "could not find PKCS#11 token"):
		return ErrTokenNotFound
	case errors.As(err, &p) && goneCodes[p]:
		return ErrTokenGone
	case errors.As(err, &p) && notPermittedCodes[p]:
		return ErrNotPermitted
	case errors.Is(err, pool.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ErrPoolExhausted
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, pool.ErrClosed):
		return ErrTokenGone
	}
	switch {
	case strings.Contains(msg, "context is closed"), strings.Contains(msg, "cannot used closed Context"):
		return ErrTokenGone
	}
	return ErrToken
}
