package pipeline

import (
	"errors"

	"appliance/queue"
	"appliance/split"
)

// Events are what the pipeline tells whoever watches it (the daemon's metrics subscribe here);
// each may be nil. They name classes, modes, profiles, reasons and configured lists, never a
// recipient.
type Events struct {
	// Classified: a spooled message's class (smime.Class.String()) as sealing found it.
	Classified func(class string)
	// Refused: a whole message refused, at end of DATA (StageData, by CheckMessage) or while
	// sealing (StageSeal, a permanent failure of Process), for RefusalReason's reason.
	Refused func(stage, reason string)
	// Sealed: a package written to the spool, with the mode and profile the pipeline recorded
	// for it (queue.Package). A message sealed again after a crash is told again: it was.
	Sealed func(mode, profile string)
	// ListExpanded: a post expanded (lists.Options.Expanded).
	ListExpanded func(list string, packages int, skipped map[string]int)
}

// Where a message was refused, for Events.Refused.
const (
	StageData = "data" // at end of DATA: the client gets a 5xx reply
	StageSeal = "seal" // after it was spooled: the sender gets a DSN
)

// Why a message was refused, for Events.Refused.
const (
	ReasonUnaccountable       = "unaccountable"          // CMS or a structure the classifier cannot account for
	ReasonMalformed           = "malformed"              // a structure that does not parse
	ReasonSignedOverEncrypted = "signed_over_encrypted"  // an envelope under the client's signature
	ReasonRecipientInfo       = "recipientinfo_rejected" // a RecipientInfo of nobody in the envelope (reject policy)
	ReasonUnsplittable        = "unsplittable"           // a client's envelope that cannot be split
	ReasonSender              = "sender"                 // an originator the appliance does not sign as
	ReasonTooBig              = "too_big"                // a spooled message longer than the read limit
	ReasonOther               = "other"
)

// RefusalReason names the reason of a refusal the pipeline returned.
func RefusalReason(err error) string {
	var re *RefusedError
	switch {
	case errors.As(err, &re) && re.Malformed:
		return ReasonMalformed
	case errors.Is(err, ErrSignedOverEncrypted):
		return ReasonSignedOverEncrypted
	case errors.Is(err, ErrUnaccountable):
		return ReasonUnaccountable
	case errors.Is(err, split.ErrRecipientInfoRejected):
		return ReasonRecipientInfo
	case errors.Is(err, split.ErrUnsplittable):
		return ReasonUnsplittable
	case errors.Is(err, ErrUnknownSender):
		return ReasonSender
	case errors.Is(err, queue.ErrMessageTooBig):
		return ReasonTooBig
	}
	return ReasonOther
}

// refused tells Events.Refused of a refusal at stage and returns err.
func (p *Pipeline) refused(stage string, err error) error {
	if p.opts.Events.Refused != nil {
		p.opts.Events.Refused(stage, RefusalReason(err))
	}
	return err
}
