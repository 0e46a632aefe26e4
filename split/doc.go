// Package split plans how one submitted message becomes outgoing packages so
// that no recipient learns of a hidden (Bcc) recipient. It is pure: no I/O, no
// crypto, no logging; [Make] turns the header, the SMTP envelope, the
// directory's certificates and the [Policy] into a [Plan], and [CheckPrivacy]
// is the oracle that verifies a plan.
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
// To and Cc include Resent-To and Resent-Cc; From/Sender include Reply-To,
// Resent-From, Resent-Sender and MAIL FROM (which reaches every recipient as
// Return-Path anyway). A recipient is hidden when it is listed in
// Bcc/Resent-Bcc, or is in the envelope and in no To/Cc field; one listed in
// both To/Cc and Bcc is visible. Completeness: every envelope recipient ends
// up in exactly one package that it can decrypt, or in [Plan.Refused].
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
