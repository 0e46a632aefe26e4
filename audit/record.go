// Package audit is the appliance's tamper-evident audit trail: an append-only log of JSON lines,
// one record per accepted message, per package sealed and per delivery outcome.
//
// Every record carries the SHA-256 of the line before it (prev) and a sequence number (seq) that
// rises by one across the whole trail. The trail is a sequence of files, audit-000001.log,
// audit-000002.log, ...; each starts with an "open" record naming its index and chaining to the
// last record of the file before, and each file that is closed (rotation by size or age, or Close)
// ends with a "seal" record: the head of the chain (the hash of the record before the seal),
// the file index and seq, signed by a crypto.Signer (the HSM's key in the daemon). The signature
// is inside the file, as its last record, not in a sidecar file.
//
// Durability: Append returns once its record is on disk (fdatasync), so a record is durable
// before the action it records is acknowledged, provided the caller writes it first. Concurrent
// Appends share one fdatasync (group commit): records are written in order under a lock, and one
// sync covers all written before it. A new file is synced, with its directory, before the first
// record goes into it; the seal record is fsynced before the file is closed; a file continued
// after a crash is synced before anything is added to it.
//
// Verify reads files back and names the first record that was changed, removed or reordered, a
// file missing from the sequence, and a seal whose signature does not hold.
package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// Record types.
const (
	TypeOpen     = "open"     // first record of each file
	TypeAccepted = "accepted" // a message accepted from a client
	TypeSealed   = "sealed"   // one package sealed for its recipients
	TypeDelivery = "delivery" // one delivery outcome for one recipient of a package
	TypeSeal     = "seal"     // last record of a closed file: the signed head
)

// Delivery outcomes.
const (
	Delivered = "delivered"
	Deferred  = "deferred"
	Bounced   = "bounced"
)

// Record is one line of the trail. Fields are written in this order; empty ones are left out.
type Record struct {
	Seq  uint64    `json:"seq"`
	Prev string    `json:"prev"` // hex SHA-256 of the previous line (without its newline); "" for the very first
	Time time.Time `json:"time"`
	Type string    `json:"type"`

	File uint64 `json:"file,omitempty"` // open and seal: this file's index

	Message    string   `json:"message,omitempty"` // the queue's message ID
	From       string   `json:"from,omitempty"`    // MAIL FROM
	AuthUser   string   `json:"auth_user,omitempty"`
	Recipients []string `json:"recipients,omitempty"` // accepted: every envelope recipient; sealed: the package's
	Size       int64    `json:"size,omitempty"`
	Digest     string   `json:"digest,omitempty"` // "sha256:HEX" of the message (accepted) or package (sealed)

	Package        *int     `json:"package,omitempty"` // sealed, delivery: the package's index in its message
	Mode           string   `json:"mode,omitempty"`
	Profile        string   `json:"profile,omitempty"`
	RecipientInfos []string `json:"recipient_infos,omitempty"` // sealed: each RecipientInfo's identifier

	Recipient string `json:"recipient,omitempty"` // delivery
	Outcome   string `json:"outcome,omitempty"`   // delivery: delivered, deferred, bounced
	Reply     string `json:"reply,omitempty"`     // delivery: the next hop's reply

	Head      string `json:"head,omitempty"`      // seal: equals prev, the hash the signature covers
	Key       string `json:"key,omitempty"`       // seal: base64 PKIX public key of the signer
	Signature string `json:"signature,omitempty"` // seal: base64 signature over Statement
}

// Statement is what a seal record's signature covers: SHA-256 over these bytes is the digest
// handed to the signer (RSA PKCS#1 v1.5 or ECDSA); an Ed25519 key signs the bytes themselves.
func Statement(file, seq uint64, head string) []byte {
	return fmt.Appendf(nil, "appliance audit head v1\nfile %d\nseq %d\nhead %s\n", file, seq, head)
}

// lineHash is the hex SHA-256 of a record line without its newline.
func lineHash(line []byte) string {
	h := sha256.Sum256(line)
	return hex.EncodeToString(h[:])
}

func marshal(r *Record) ([]byte, error) {
	return json.Marshal(r)
}

// Digest formats a SHA-256 of content the way records carry it.
func Digest(sum [sha256.Size]byte) string { return "sha256:" + hex.EncodeToString(sum[:]) }
