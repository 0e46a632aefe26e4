package smtpfront

import (
	"github.com/emersion/go-sasl"
)

// LOGIN (draft-murchison-sasl-login, never an RFC) is obsolete, but many
// submitting applications and appliances still offer nothing else, so the
// front end speaks it next to PLAIN. go-sasl has only its client side.
//
// The exchange: the server asks "Username:" and then "Password:", and the
// client answers each with the value; go-smtp does the base64 either way.
// Clients that know the mechanism may send the user name as an initial
// response ("AUTH LOGIN dXNlcg=="), which skips the first question. An
// empty initial response ("AUTH LOGIN =") is taken as none, since no user
// has an empty name and asking is what a confused client needs.
//
// Each answer is a line go-smtp reads like a command, so outside a
// transaction a LOGIN counts up to three toward MaxCommandsBeforeMail where
// PLAIN with an initial response counts one; the default of 50 leaves room.

// The challenges, spelled as every client (go-sasl's too) compares them.
var (
	loginUsername = []byte("Username:")
	loginPassword = []byte("Password:")
)

type loginStep int

const (
	loginStart loginStep = iota
	loginWantUser
	loginWantPass
	loginDone
)

// loginServer is the server side of LOGIN. check runs exactly once, with
// the user name and password the client gave.
type loginServer struct {
	step     loginStep
	username string
	check    func(username, password string) error
}

var _ sasl.Server = (*loginServer)(nil)

func newLoginServer(check func(username, password string) error) *loginServer {
	return &loginServer{check: check}
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case loginStart:
		if len(response) == 0 {
			l.step = loginWantUser
			return loginUsername, false, nil
		}
		l.username = string(response)
		l.step = loginWantPass
		return loginPassword, false, nil
	case loginWantUser:
		l.username = string(response)
		l.step = loginWantPass
		return loginPassword, false, nil
	case loginWantPass:
		l.step = loginDone
		return nil, true, l.check(l.username, string(response))
	default:
		// go-smtp stops calling after done; anything else is a bug.
		return nil, false, sasl.ErrUnexpectedClientResponse
	}
}
