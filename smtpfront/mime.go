package smtpfront

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// The MIME structure is checked while the body streams to the spool: a
// checker goroutine walks the multipart tree (with go-message's textproto,
// which does not decode transfer encodings) from a pipe that the spool's
// reader feeds. A message nested deeper than MaxMIMEDepth or with more than
// MaxMIMEParts parts fails the spool's read, so nothing is stored, and is
// refused with 550 5.6.0. What the later stages parse (the pipeline signs
// and splits the entity) is then bounded, and a nesting bomb costs the
// front end one goroutine and a pipe, not a stack per level.
//
// Other defects (a missing closing boundary, bad base64, a bad
// Content-Type) are not refused here: the appliance signs the entity as
// the client made it, and what a recipient's client makes of a sloppy
// message is not a security question.

var (
	errMIMEDepth = &messageError{text: "MIME structure nested too deeply"}
	errMIMEParts = &messageError{text: "too many MIME parts"}
)

// errGuardClosed stops the checker when the spool stops reading early.
var errGuardClosed = errors.New("mime guard closed")

// mimeGuard passes r through unchanged and fails the read that would end
// the message if the structure check failed.
type mimeGuard struct {
	r    io.Reader
	pw   *io.PipeWriter
	done chan error
	err  error
	fin  bool
}

func newMIMEGuard(r io.Reader, h textproto.Header, maxDepth, maxParts int) *mimeGuard {
	if !readsBody(h) {
		// The checker would stop at this header (a single part, the common message): no
		// goroutine to hand the body to, the reads go straight through.
		return &mimeGuard{r: r, fin: true}
	}
	pr, pw := io.Pipe()
	g := &mimeGuard{r: r, pw: pw, done: make(chan error, 1)}
	go func() {
		c := &mimeChecker{maxDepth: maxDepth, maxParts: maxParts}
		// The multipart reader reads in small pieces; a buffer here
		// takes each of the spool's writes in one go instead of one
		// goroutine hand-off per piece.
		br := bodyReaders.Get().(*bufio.Reader)
		br.Reset(pr)
		defer func() {
			br.Reset(nil)
			bodyReaders.Put(br)
		}()
		err := c.entity(h, br, 0)
		if err != nil {
			// Wakes the writer with the verdict.
			pr.CloseWithError(err)
		} else {
			// The check is over (or gave up on a malformed part): take
			// the rest without looking so the spool is not held up.
			_, _ = io.Copy(io.Discard, pr)
		}
		g.done <- err
	}()
	return g
}

func (g *mimeGuard) Read(p []byte) (int, error) {
	if g.pw == nil {
		return g.r.Read(p)
	}
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	if n > 0 {
		if _, werr := g.pw.Write(p[:n]); werr != nil {
			g.err = werr
			g.finish(werr)
			return 0, werr
		}
	}
	switch {
	case err == io.EOF:
		g.pw.Close()
		g.fin = true
		if cerr := <-g.done; cerr != nil {
			g.err = cerr
			return 0, cerr
		}
	case err != nil:
		g.err = err
		g.finish(err)
	}
	return n, err
}

// finish ends the checker and waits for it; safe to call more than once.
func (g *mimeGuard) finish(cause error) {
	if g.fin {
		return
	}
	g.fin = true
	g.pw.CloseWithError(cause)
	<-g.done
}

// Close stops the checker if the reader was abandoned before EOF.
func (g *mimeGuard) Close() { g.finish(errGuardClosed) }

// structureErr is the guard's own verdict, if that is why reading failed.
func (g *mimeGuard) structureErr() error {
	if errors.Is(g.err, errMIMEDepth) || errors.Is(g.err, errMIMEParts) {
		return g.err
	}
	return nil
}

type mimeChecker struct {
	maxDepth, maxParts int
	parts              int
}

// readsBody reports whether the checker reads the body of an entity with header h: a
// multipart with a boundary, or a message/rfc822 (or global) not transfer-encoded. Every
// other entity is a leaf; its body is not looked at.
func readsBody(h textproto.Header) bool {
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		return params["boundary"] != ""
	case mt == "message/rfc822" || mt == "message/global":
		switch strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding"))) {
		case "", "7bit", "8bit", "binary":
			return true
		}
	}
	return false
}

func (c *mimeChecker) entity(h textproto.Header, body io.Reader, depth int) error {
	if c.maxDepth > 0 && depth > c.maxDepth {
		return errMIMEDepth
	}
	if !readsBody(h) {
		return nil
	}
	mt, params, _ := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		mr := textproto.NewMultipartReader(body, params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				// io.EOF or a malformed multipart: either way the
				// structure ends here.
				return nil
			}
			c.parts++
			if c.maxParts > 0 && c.parts > c.maxParts {
				return errMIMEParts
			}
			if err := c.entity(p.Header, p, depth+1); err != nil {
				return err
			}
		}
	default: // message/rfc822 or message/global, not encoded (encoded messages are opaque to every later stage too)
		br := bufio.NewReader(body)
		inner, err := textproto.ReadHeader(br)
		if err != nil {
			return nil
		}
		return c.entity(inner, br, depth+1)
	}
}

// checkStructure is the checker on a whole message in memory, for tests
// and fuzzing.
func checkStructure(msg io.Reader, maxDepth, maxParts int) error {
	br := bufio.NewReader(msg)
	h, err := textproto.ReadHeader(br)
	if err != nil {
		return fmt.Errorf("failed to read header: %w", err)
	}
	c := &mimeChecker{maxDepth: maxDepth, maxParts: maxParts}
	return c.entity(h, br, 0)
}
