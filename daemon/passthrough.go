package daemon

import (
	"context"
	"errors"
	"io"

	"appliance/config"
	"appliance/pipeline"
	"appliance/queue"
	"appliance/smtpfront"
	"appliance/split"
)

// PassThroughPolicy is the client-encrypted mode's policy from [policy].
func PassThroughPolicy(cfg *config.Config) split.PassThroughPolicy {
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

// checkMessages classifies every message at end of DATA, before it is accepted, as the
// pipeline will, reading it from the spool file it was staged in, under the pipeline's memory
// budget: a message it refuses (CMS it cannot account for, an envelope under a signature, a
// structure it cannot read) is discarded and gets its reason in a 5xx reply now rather than in
// a bounce; so does, under policy.unknown_recipientinfo = "reject", a client-encrypted message
// whose RecipientInfos name someone outside the envelope. Other problems (an unsplittable
// message, a directory outage) are the queue's to report in a DSN or retry. The class found is
// kept with the accepted message, so that the pipeline does not classify it again.
func checkMessages(pipe *pipeline.Pipeline, next smtpfront.Stager) smtpfront.Spooler {
	return smtpfront.CheckedSpooler(next, func(ctx context.Context, env queue.Envelope, msg *io.SectionReader) (string, error) {
		class, err := pipe.CheckSpooled(ctx, env, msg)
		var re *pipeline.RefusedError
		switch {
		case errors.As(err, &re):
			return "", &smtpfront.MessageRefusal{Text: "message refused: " + re.Reason, Malformed: re.Malformed, Err: err}
		case errors.Is(err, split.ErrRecipientInfoRejected):
			return "", &smtpfront.MessageRefusal{Text: "message is encrypted to recipients outside its envelope", Err: err}
		}
		return class, nil
	})
}
