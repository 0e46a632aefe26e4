package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"appliance/config"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smtpfront"

	"github.com/emersion/go-smtp"
)

func passThroughPolicy(cfg *config.Config) pipeline.PassThroughPolicy {
	var pol pipeline.PassThroughPolicy
	if cfg.Policy.UnknownRecipientInfo == config.UnknownRIReject {
		pol.Unknown = pipeline.RejectUnknown
	}
	if cfg.Policy.PassThroughMissing == config.PassThroughMissingDeliver {
		pol.Missing = pipeline.DeliverMissing
	}
	return pol
}

// checkMessages refuses at end of DATA, before anything is spooled, a client-encrypted message
// whose RecipientInfos name someone outside the envelope, when policy.unknown_recipientinfo is
// "reject". Only then is the body held in memory before spooling; otherwise it streams.
func checkMessages(cfg *config.Config, pipe *pipeline.Pipeline, next smtpfront.Spooler) smtpfront.Spooler {
	if cfg.Policy.UnknownRecipientInfo != config.UnknownRIReject {
		return next
	}
	return checkedSpool{next: next, pipe: pipe, max: cfg.SMTP.MaxMessageBytes}
}

type checkedSpool struct {
	next smtpfront.Spooler
	pipe *pipeline.Pipeline
	max  int64
}

var replyRecipientInfos = &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1},
	Message: "message is encrypted to recipients outside its envelope"}

func (c checkedSpool) Accept(ctx context.Context, env queue.Envelope, body io.Reader) (string, error) {
	msg, err := io.ReadAll(io.LimitReader(body, c.max+1))
	if err != nil {
		return "", err
	}
	if int64(len(msg)) > c.max {
		return "", fmt.Errorf("%w: over %d bytes", smtpfront.ErrMessageTooBig, c.max)
	}
	if err := c.pipe.CheckMessage(ctx, env, msg); errors.Is(err, pipeline.ErrRecipientInfoRejected) {
		return "", fmt.Errorf("%w: %w", replyRecipientInfos, err)
	}
	// Other problems (an unsplittable message) are the queue's to report in a DSN.
	return c.next.Accept(ctx, env, bytes.NewReader(msg))
}
