package pipeline

import (
	"context"
	"errors"

	"appliance/queue"
)

// isList reports whether addr is a mail list the appliance expands (DESIGN section 7).
func (p *Pipeline) isList(addr string) bool { return false }

// listsIn separates the list addresses among env's recipients from the rest.
func (p *Pipeline) listsIn(env queue.Envelope) (lists []string, rest queue.Envelope) {
	return nil, env
}

// expandList makes one package per member of list.
func (p *Pipeline) expandList(ctx context.Context, id string, env queue.Envelope, list string, msg []byte) (*queue.Sealed, error) {
	return nil, errors.New("mail lists are not implemented")
}
