package pipeline

// Dispatch of client-encrypted mail to its mode (package passthrough): what may be split is the
// classifier's to say (smime.Classify, from the DER of every part): an envelope that is the
// whole message, or, under policy, one under the client's signature (signed again); anything
// else it cannot account for is refused (RefusedError).

import (
	"context"
	"errors"
	"fmt"

	"appliance/queue"
	"appliance/seal"
	"appliance/smime"
	"appliance/split"
)

// PlanPassThrough reports what splitting msg for env would do, without building anything
// (passthrough.Splitter.Inspect), or the *RefusedError of a message the classifier refuses.
func (p *Pipeline) PlanPassThrough(env queue.Envelope, msg []byte) (*split.PassThroughPlan, error) {
	c := smime.Classify(msg)
	if err := p.refusal(c, false); err != nil {
		return nil, err
	}
	return p.passThrough.Inspect(env, msg, c)
}

// CheckMessage is asked by the front end at end of DATA, before the message is accepted. It
// classifies the message as sealing will: what the classifier refuses (a *RefusedError
// wrapping ErrUnaccountable or ErrSignedOverEncrypted) is refused now, and for a
// client-encrypted message what splitting would later refuse (split.ErrUnsplittable,
// split.ErrRecipientInfoRejected) too, so the client learns it now rather than from a bounce.
// Plain messages pass. A message signed over its encryption passes only when every envelope
// recipient is a list. Refusals are told to Events.Refused (StageData).
func (p *Pipeline) CheckMessage(ctx context.Context, env queue.Envelope, msg []byte) error {
	return p.checkClassified(ctx, env, msg, smime.Classify(msg))
}

func (p *Pipeline) checkClassified(_ context.Context, env queue.Envelope, msg []byte, c *smime.Classification) error {
	lists, rest := p.lists.Split(env)
	if err := p.refusal(c, len(lists) > 0 && len(rest.RcptTo) == 0); err != nil {
		return p.refused(StageData, err)
	}
	if (c.Class != smime.ClientEncrypted && c.Class != smime.SignedOverEncrypted) || len(rest.RcptTo) == 0 {
		return nil
	}
	_, err := p.passThrough.Plan(rest, msg, c)
	if errors.Is(err, split.ErrRecipientInfoRejected) {
		return p.refused(StageData, err)
	}
	return err
}

// splitClientEncrypted splits a client-encrypted message into packages without decrypting it;
// one that was under the client's signature is signed again with the sender's key.
func (p *Pipeline) splitClientEncrypted(ctx context.Context, id string, env queue.Envelope, msg []byte, c *smime.Classification) (*Result, error) {
	sender, ok := p.SenderFor(env.MailFrom)
	if !ok {
		return nil, fmt.Errorf("failed to split: %w: %q", ErrUnknownSender, env.MailFrom)
	}
	var resign func() (*seal.Sender, error)
	if c.Class == smime.SignedOverEncrypted {
		// Only the sender's own key signs again, on the HSM.
		resign = func() (*seal.Sender, error) {
			signer, err := p.opts.Token.Signer(ctx, sender.KeyURI)
			if err != nil {
				return nil, fmt.Errorf("failed to find the signing key of %q: %w", sender.Address, err)
			}
			return &seal.Sender{Signer: signer, Chain: sender.Chain, PSS: sender.PSS}, nil
		}
	}
	plan, sealed, err := p.passThrough.Split(id, env, msg, c, resign)
	if err != nil {
		return nil, err
	}
	return &Result{Plan: plan, Sealed: sealed}, nil
}
