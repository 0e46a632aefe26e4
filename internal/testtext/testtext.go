// Package testtext makes the plain text the benchmark sends (bench/loadgen's shapes) and the
// benchmarks of the end-of-DATA check read: a body of 76-column CRLF lines of base64's
// alphabet, random from a fixed seed, so that nothing downstream can compress it away and the
// same size always gives the same bytes. A 7bit body of such lines reads as base64 to the
// classifier, the case issue 18 measured.
package testtext

import "math/rand/v2"

const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// Body is a body of at least size bytes: whole lines of 78 bytes (76 and CRLF), the fewest
// that reach size.
func Body(size int) []byte {
	return AppendBody(make([]byte, 0, size+size/76*2+78), size)
}

// AppendBody appends Body(size) to b.
func AppendBody(b []byte, size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	for start := len(b); len(b)-start < size; {
		for range 76 {
			b = append(b, alphabet[r.IntN(len(alphabet))])
		}
		b = append(b, '\r', '\n')
	}
	return b
}

// Header is the header of the plain message of Message: bench/loadgen's for the "1m" shape's
// first message, with a fixed date.
const Header = "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: bench 1m #1\r\n" +
	"Message-ID: <1@example.test>\r\nDate: Thu, 03 Dec 2026 12:00:00 +0000\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"

// Message is the benchmark's plain message, Header and a body of about size bytes (Body),
// declared 7bit.
func Message(size int) []byte {
	return AppendBody(append(make([]byte, 0, len(Header)+size+size/76*2+78), Header...), size)
}
