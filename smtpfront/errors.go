package smtpfront

import (
	"context"
	"errors"
	"syscall"

	"appliance/retry"

	"github.com/emersion/go-smtp"
)

// Errors a Policy, Spooler or Authenticator may return, wrapped with %w as
// needed. Reply turns each into its SMTP reply; anything it does not know
// becomes 554 5.0.0 without details.
var (
	// ErrSenderRefused: the reverse path (or the header From/Sender) is not
	// a sender this client may use. 550 5.7.1.
	ErrSenderRefused = errors.New("sender not authorized")
	// ErrRecipientRefused: policy refuses the recipient, e.g. it has no
	// usable certificate and missing_cert is "reject". 550 5.7.1.
	ErrRecipientRefused = errors.New("recipient refused by policy")
	// ErrTooManyRecipients: the transaction reached MaxRecipients. 452 4.5.3.
	ErrTooManyRecipients = errors.New("too many recipients")
	// ErrMessageTooBig: the message (or its header) exceeds a size limit. 552 5.3.4.
	ErrMessageTooBig = errors.New("message too big")
	// ErrBadAddress: a mailbox that go-smtp's path grammar let through but
	// that is no valid addr-spec. 501 5.1.3 for recipients, 501 5.1.7 for
	// the sender (see Reply).
	ErrBadAddress = errors.New("bad address syntax")
	// ErrMalformedMessage: the message header does not parse, is missing or
	// lacks a From field. 550 5.6.0.
	ErrMalformedMessage = errors.New("malformed message")
	// ErrSpoolFull: the spool cannot take the message now. 452 4.3.1.
	// syscall.ENOSPC and syscall.EDQUOT map to the same reply, so a spool
	// that merely wraps the failing write gets it right too.
	ErrSpoolFull = errors.New("spool full")
	// ErrTemporary: transient trouble (HSM unavailable, directory reload).
	// 451 4.3.0. Errors with a Temporary() bool method reporting true and
	// context expiry map to the same reply.
	ErrTemporary = errors.New("temporary failure")
	// ErrAuthRequired: the listener requires AUTH before MAIL. 530 5.7.0.
	ErrAuthRequired = errors.New("authentication required")
)

// PolicyError is a refusal whose Text is shown to the client. Text must name
// nothing but the address being refused: never another recipient, a path,
// a key or token label. Err is the cause and goes to the log only.
// Temporary selects 451 4.3.0 over 550 5.7.1 (e.g. a directory outage).
type PolicyError struct {
	Text      string
	Temporary bool
	Err       error
}

func (e *PolicyError) Error() string {
	if e.Err != nil {
		return "policy refused: " + e.Text + ": " + e.Err.Error()
	}
	return "policy refused: " + e.Text
}

func (e *PolicyError) Unwrap() error { return e.Err }

// Reply codes, named so tests and callers can compare against them.
var (
	replySenderRefused    = reply(550, 5, 7, 1, "sender not authorized")
	replyRecipientRefused = reply(550, 5, 7, 1, "recipient refused by policy")
	replyTooManyRcpts     = reply(452, 4, 5, 3, "too many recipients")
	replyTooBig           = reply(552, 5, 3, 4, "message exceeds size limit")
	replyBadRcptSyntax    = reply(501, 5, 1, 3, "bad recipient address syntax")
	replyBadSenderSyntax  = reply(501, 5, 1, 7, "bad sender address syntax")
	replyMalformed        = reply(550, 5, 6, 0, "malformed message")
	replySpoolFull        = reply(452, 4, 3, 1, "insufficient system storage, try again later")
	replyTemporary        = reply(451, 4, 3, 0, "temporary failure, try again later")
	replyAuthRequired     = reply(530, 5, 7, 0, "authentication required")
	replyAuthLocked       = reply(454, 4, 7, 0, "too many failed authentication attempts, try again later")
	replyUnknown          = reply(554, 5, 0, 0, "transaction failed")
)

func reply(code, a, b, c int, text string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{a, b, c}, Message: text}
}

// Stage says which command an error belongs to; it only changes the reply
// for ErrBadAddress (X.1.7 is the sender's syntax code, X.1.3 the
// recipient's).
type Stage int

const (
	StageMail Stage = iota
	StageRcpt
	StageData
)

// Reply maps any error to the SMTP reply the client sees. It is the only
// place errors meet SMTP: the session returns nothing else to go-smtp
// (which type-asserts *smtp.SMTPError and would otherwise print err.Error()
// to the client). Unknown errors become 554 5.0.0 with no details; callers
// log the original.
func Reply(stage Stage, err error) *smtp.SMTPError {
	r := mapError(stage, err)
	if r == nil {
		return nil
	}
	cp := *r // callers may not alter the shared replies
	return &cp
}

func mapError(stage Stage, err error) *smtp.SMTPError {
	var se *smtp.SMTPError
	var pe *PolicyError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se):
		// go-smtp's own sentinels (ErrDataTooLarge, ErrAuthFailed, ...)
		// already carry their code; keep them.
		return se
	case errors.As(err, &pe):
		if pe.Temporary {
			return reply(451, 4, 3, 0, pe.Text)
		}
		return reply(550, 5, 7, 1, pe.Text)
	case errors.Is(err, ErrSenderRefused):
		return replySenderRefused
	case errors.Is(err, ErrRecipientRefused):
		return replyRecipientRefused
	case errors.Is(err, ErrTooManyRecipients):
		return replyTooManyRcpts
	case errors.Is(err, ErrMessageTooBig):
		return replyTooBig
	case errors.Is(err, ErrBadAddress):
		if stage == StageMail {
			return replyBadSenderSyntax
		}
		return replyBadRcptSyntax
	case errors.Is(err, ErrMalformedMessage):
		var me *messageError
		if errors.As(err, &me) {
			return reply(550, 5, 6, 0, me.text)
		}
		return replyMalformed
	case errors.Is(err, ErrAuthRequired):
		return replyAuthRequired
	case errors.Is(err, ErrSpoolFull), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return replySpoolFull
	case errors.Is(err, ErrTemporary),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		retry.IsTemporary(err, false):
		return replyTemporary
	case errors.Is(err, smtp.ErrTooLongLine):
		return reply(500, 5, 5, 2, "line too long")
	default:
		return replyUnknown
	}
}

// messageError is an ErrMalformedMessage with client-safe text describing
// what is wrong with the message (never its content).
type messageError struct {
	text string
	err  error
}

func (e *messageError) Error() string {
	if e.err != nil {
		return e.text + ": " + e.err.Error()
	}
	return e.text
}

func (e *messageError) Is(target error) bool { return target == ErrMalformedMessage }
func (e *messageError) Unwrap() error        { return e.err }
