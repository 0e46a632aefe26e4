package smtpfront

import (
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

// CheckFunc judges a message at end of DATA, reading it from the spool file it was staged in
// (msg: nothing of it is held in memory but what the check reads). A [*MessageRefusal] refuses
// it; any other error lets it through (what the spool's workers will report is theirs to
// report). class, when not empty, is kept with the accepted message ([queue.Envelope].Class):
// what the check found, so that the pipeline need not find it again.
type CheckFunc func(ctx context.Context, env queue.Envelope, msg *io.SectionReader) (class string, err error)

// Stager is a spool that can write a message before accepting it (*queue.Queue through the
// daemon's error mapping).
type Stager interface {
	Stage(ctx context.Context, env queue.Envelope, body io.Reader) (StagedMessage, error)
}

// StagedMessage is a message written to the spool but not accepted (*queue.Staged): Commit
// accepts it (only then may the client get its 250), Discard removes it.
type StagedMessage interface {
	Body() *io.SectionReader
	Commit(class string) (string, error)
	Discard()
}

// CheckedSpooler puts check between DATA and the 250: the message streams into the spool
// (next.Stage; bounded buffers, never held whole here), check reads it from there, and it is
// committed when check lets it through, or discarded and refused at end of DATA, with its
// reason in the reply, when check refuses it, rather than bounced later.
func CheckedSpooler(next Stager, check CheckFunc) Spooler {
	return checkedSpool{next: next, check: check}
}

type checkedSpool struct {
	next  Stager
	check CheckFunc
}

func (c checkedSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	st, err := c.next.Stage(ctx, env, body)
	if err != nil {
		return "", err
	}
	class, err := c.check(ctx, env, st.Body())
	var mr *MessageRefusal
	if errors.As(err, &mr) {
		st.Discard()
		return "", fmt.Errorf("%w: %w", mr.reply(), err)
	}
	if err != nil {
		class = ""
	}
	if err := ctx.Err(); err != nil {
		// The client is gone: it cannot be told 250, so nothing was accepted.
		st.Discard()
		return "", fmt.Errorf("failed to accept message: %w", err)
	}
	return st.Commit(class)
}
