package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"appliance/config"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smtpfront"
	"appliance/split"

	"github.com/emersion/go-smtp"
)

func passThroughPolicy(cfg *config.Config) split.PassThroughPolicy {
	var pol split.PassThroughPolicy
	if cfg.Policy.UnknownRecipientInfo == config.UnknownRIReject {
		pol.Unknown = split.RejectUnknown
	}
	if cfg.Policy.PassThroughMissing == config.PassThroughMissingDeliver {
		pol.Missing = split.DeliverMissing
	}
	if cfg.Policy.SignedOverEncrypted == config.SignedOverEncryptedResign {
		pol.SignedOverEncrypted = split.ResignSignedOverEncrypted
	}
	return pol
}

// checkMessages classifies every message at end of DATA, before anything is spooled, as the
// pipeline will: a message it refuses (CMS it cannot account for, an envelope under a
// signature, a structure it cannot read) gets its reason in a 5xx reply now rather than in a
// bounce; so does, under policy.unknown_recipientinfo = "reject", a client-encrypted message
// whose RecipientInfos name someone outside the envelope. The body is held in memory (within
// smtp.max_message_bytes) while it is checked.
func checkMessages(cfg *config.Config, pipe *pipeline.Pipeline, next smtpfront.Spooler) smtpfront.Spooler {
	return checkedSpool{next: next, pipe: pipe, max: cfg.SMTP.MaxMessageBytes}
}

type checkedSpool struct {
	next smtpfront.Spooler
	pipe *pipeline.Pipeline
	max  int64
}

var replyRecipientInfos = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
	Message: "message is encrypted to recipients outside its envelope"}

// refusedReply is the reply to a message the classifier refuses: 550 5.6.0 for a structure
// that does not parse, 554 5.7.1 for one the appliance must not pass on. The reason describes
// the structure, never an address.
func refusedReply(re *pipeline.RefusedError) *smtp.SMTPError {
	text := "message refused: " + strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, re.Reason)
	if re.Malformed {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: text}
	}
	return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: text}
}

func (c checkedSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	msg, err := io.ReadAll(io.LimitReader(body, c.max+1))
	if err != nil {
		return "", err
	}
	if int64(len(msg)) > c.max {
		return "", fmt.Errorf("%w: over %d bytes", smtpfront.ErrMessageTooBig, c.max)
	}
	err = c.pipe.CheckMessage(ctx, env, msg)
	var re *pipeline.RefusedError
	switch {
	case errors.As(err, &re):
		return "", fmt.Errorf("%w: %w", refusedReply(re), err)
	case errors.Is(err, split.ErrRecipientInfoRejected):
		return "", fmt.Errorf("%w: %w", replyRecipientInfos, err)
	}
	// Other problems (an unsplittable message, a directory outage) are the queue's to report
	// in a DSN or retry.
	return c.next.Accept(ctx, env, bytes.NewReader(msg))
}
