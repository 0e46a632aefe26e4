package queue

import "time"

// Envelope is what the SMTP front end knows of a message besides its bytes.
// It is stored beside the body in the spool and is the truth for delivery.
type Envelope struct {
	MailFrom   string    // reverse path, "" for the null sender
	RcptTo     []string  // forward paths in the order given
	ClientAddr string    // remote address of the submitting client
	Helo       string    // the name the client gave in HELO/EHLO
	AuthUser   string    // SASL identity, "" when not authenticated
	ReceivedAt time.Time // when the front end accepted DATA
	// Class is what the front end's check at end of DATA found the message
	// to be (smime.Class's name), so that the pipeline need not classify it
	// again; "" when no check recorded one (then it classifies).
	Class string `json:",omitempty"`
}
