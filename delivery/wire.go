package delivery

import (
	"io"
	"net"
	"sync/atomic"
	"time"

	"appliance/queue"
)

// tailChunk is how much of a tail one sendfile call may send before the write deadline is
// renewed: like every other write, each chunk gets the command timeout, so a stalled peer is
// still found while a large tail goes out.
const tailChunk = 512 << 10

// tailBytes counts the bytes sent from spool files as they are (sendTail), for tests.
var tailBytes atomic.Int64

// writeBody writes body onto the session's connection in DATA form, all but its held tail
// (dotStuffer.Held: nil, "\r\n" or "\r"), which the caller ends the data with, through
// go-smtp's writer or dataEnd. Both transaction paths send their body here.
//
// Everything is dot-stuffed, except the tail of a queue.WireBody: the bytes the spool checked,
// as it wrote them, to be in DATA form as they are (CRLF line ends only, no line begun by '.',
// a line end last). When the next hop is spoken to without TLS, that tail goes from the spool
// file to the socket by sendfile, instead of being read, stuffed and written for every package
// that shares it. The stuffer would not change a byte of it after whatever head: the tail's
// first byte is neither '.' nor LF, so it neither needs a dot at the start of a line nor makes
// a line end of a CR the head ended with (the head's held tail goes out as it would before more
// data), and every line after it is one the stuffer passes as it is.
func (c *Client) writeBody(s *session, body io.Reader) ([]byte, error) {
	ds := newDotStuffer(s.wire)
	defer ds.release()
	tc, head, tail, ok := wireTail(s, body)
	if !ok {
		if _, err := ds.ReadFrom(body); err != nil {
			return nil, err
		}
		if err := ds.Flush(); err != nil {
			return nil, err
		}
		return ds.Held(), nil
	}
	if _, err := ds.ReadFrom(head); err != nil {
		return nil, err
	}
	ds.writeHeld()
	if err := ds.Flush(); err != nil {
		return nil, err
	}
	// The tail's last line end is held, as the stuffer holds any.
	if err := sendTail(tc, s.conn, tail, tail.Len-2); err != nil {
		return nil, err
	}
	return crlf, nil
}

// wireTail returns the TCP connection, the head and the tail of body when body has a tail in
// wire form and the session speaks on plain TCP (not TLS, which has to encrypt every byte).
func wireTail(s *session, body io.Reader) (*net.TCPConn, io.Reader, queue.WireTail, bool) {
	wb, ok := body.(queue.WireBody)
	if !ok || s.wire != net.Conn(s.conn) {
		return nil, nil, queue.WireTail{}, false
	}
	tc, ok := s.raw.(*net.TCPConn)
	if !ok {
		return nil, nil, queue.WireTail{}, false
	}
	head, tail, ok := wb.WireTail()
	if !ok || tail.File == nil || tail.Len < 2 {
		return nil, nil, queue.WireTail{}, false
	}
	return tc, head, tail, true
}

// sendTail sends the first n bytes of t to tc as they are: TCPConn.ReadFrom from an
// io.LimitedReader over an *os.File is sendfile(2) on Linux, from the file's offset.
func sendTail(tc *net.TCPConn, conn *idleConn, t queue.WireTail, n int64) error {
	if _, err := t.File.Seek(t.Off, io.SeekStart); err != nil {
		return err
	}
	lr := &io.LimitedReader{R: t.File}
	for n > 0 {
		lr.N = min(n, tailChunk)
		tc.SetWriteDeadline(time.Now().Add(time.Duration(conn.timeout.Load())))
		k, err := tc.ReadFrom(lr)
		tailBytes.Add(k)
		n -= k
		if err != nil {
			return err
		}
		if lr.N > 0 {
			// The file ended before the spool record said.
			return io.ErrUnexpectedEOF
		}
	}
	return nil
}
