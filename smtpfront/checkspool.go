package smtpfront

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"appliance/queue"
)

// MessageRefusal is a message a check refuses at end of DATA. Text is the reply's text: it
// describes the message, never an address (characters outside printable ASCII become '?').
// Malformed selects 550 5.6.0 (the structure does not parse) over 554 5.7.1 (the message holds
// what the appliance must not pass on). Err is the cause and goes to the log only.
type MessageRefusal struct {
	Text      string
	Malformed bool
	Err       error
}

// Error is the cause's text when there is one (the reply carries Text), else Text.
func (e *MessageRefusal) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return e.Text
}

func (e *MessageRefusal) Unwrap() error { return e.Err }

func (e *MessageRefusal) reply() *smtp.SMTPError {
	text := strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, e.Text)
	if e.Malformed {
		return reply(550, 5, 6, 0, text)
	}
	return reply(554, 5, 7, 1, text)
}

// CheckFunc judges a whole message before it is spooled. A [*MessageRefusal] refuses it; any
// other answer lets it through (what the spool's workers will report is theirs to report).
type CheckFunc func(ctx context.Context, env queue.Envelope, msg []byte) error

// CheckedSpooler puts check in front of next: every message is read whole (up to max bytes; a
// larger one is [ErrMessageTooBig]) and refused at end of DATA, with its reason in the reply,
// when check refuses it, rather than in a bounce later.
func CheckedSpooler(next Spooler, max int64, check CheckFunc) Spooler {
	return checkedSpool{next: next, max: max, check: check}
}

type checkedSpool struct {
	next  Spooler
	max   int64
	check CheckFunc
}

func (c checkedSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	msg, err := io.ReadAll(io.LimitReader(body, c.max+1))
	if err != nil {
		return "", err
	}
	if int64(len(msg)) > c.max {
		return "", fmt.Errorf("%w: over %d bytes", ErrMessageTooBig, c.max)
	}
	var mr *MessageRefusal
	if err := c.check(ctx, env, msg); errors.As(err, &mr) {
		return "", fmt.Errorf("%w: %w", mr.reply(), err)
	}
	return c.next.Accept(ctx, env, bytes.NewReader(msg))
}
