// Package split plans how one submitted message becomes outgoing packages so
// that no recipient learns of a hidden (Bcc) recipient. It is pure: no I/O, no
// crypto, no logging; [Make] turns the header, the SMTP envelope, the
// directory's certificates and the [Policy] into a [Plan], and [CheckPrivacy]
// and [CheckRefusal] are the oracle that verifies a plan or a refusal.
//
// # The privacy rule
//
// For every package T with envelope recipients R(T), everything T reveals
// (addresses in its outer header, the owner of every certificate that gets a
// RecipientInfo, headers inside the shared signed content) must be visible to
// every r in R(T):
//
//	revealed(T) ⊆ visible_to(r)
//	visible_to(r) = To ∪ Cc ∪ {From/Sender} ∪ {r} ∪ (Bcc, if r is hidden and the mode is Group)
//
// To and Cc include Resent-To and Resent-Cc of every Resent- block; From/Sender
// include Resent-From, Resent-Sender and MAIL FROM (which reaches every
// recipient as Return-Path anyway). Reply-To makes nobody visible: a Reply-To
// naming a hidden recipient is left out of the packages of everyone who may
// not see them. A recipient is hidden when it is
// listed in Bcc, or is in the envelope and in no To/Cc field; one listed in
// both To/Cc and Bcc is visible. For resent mail (RFC 5322 section 3.6.6) the
// newest Resent- block alone says who is visible: its Resent-To and Resent-Cc
// play To and Cc, its Resent-Bcc plays Bcc, and everyone else is hidden (the
// original To and Cc stay readable text). Completeness: every envelope
// recipient ends up in exactly one package that it can decrypt, or in
// [Plan.Refused].
//
// # Headers
//
// revealed(T) covers every field of T's header in any spelling (angle
// brackets, quoted local parts, comments, encoded words). Make decides each
// package's header by allowlist and carries it as [HeaderEdits]: known fields
// are kept unless they name someone outside the package's visible set, address
// fields are rebuilt from bare addresses when a comment or name would reveal
// someone, Received loses its "for" clauses, and Bcc, delivery, envelope,
// receipt-request and X- fields are dropped, as is an unknown field holding
// an '@'. An address field whose own addresses still read as someone outside
// the visible set once rebuilt (a quoted local part with a space) is dropped.
// A Content-* field naming a hidden recipient, or a second instance of a field
// RFC 5322 allows once, refuses the message ([FieldError]). Every byte >= 0x80
// counts as an address character, and a byte that is not UTF-8 is judged as
// U+FFFD, as normalization reads it. The Received field and List-Id the
// appliance adds are built here too ([Trace], [ListID]).
//
// # Client-encrypted mail
//
// [PlanPassThrough] plans the split of a client's envelope: each RecipientInfo
// is attributed to an owner by its identifier (the caller says who owns which),
// Make plans the packages, and the plan says which RecipientInfos each package
// carries.
//
// # Modes
//
//   - [Individual] (default): one package per profile for all visible
//     recipients, plus one package per hidden recipient.
//   - [Group]: hidden recipients share one package per profile and may see
//     each other (and a Bcc field listing them), never the visible packages.
//
// Recipients without a certificate are refused ([Reject], 550 5.7.1), get a
// signed-only package of their own ([Plaintext]), or are dropped with a DSN to
// the sender ([Drop]). Packages are also grouped by content profile, and the
// plan lists each profile once, so the content is encrypted once per profile
// and never once per package.
package split
