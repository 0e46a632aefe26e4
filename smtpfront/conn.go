package smtpfront

import (
	"net"
	"time"
)

// Deadlines that mean what they say. The tracked connection, not go-smtp
// and not the DATA reader, owns the read deadline:
//
//   - Idle: every Read on the socket gets the idle timeout (ReadTimeout,
//     or StressReadTimeout while the server is under stress) from the
//     moment it starts waiting. go-smtp sets a deadline only before each
//     command line, and its DATA reader fills a 64 KB buffer before it
//     returns, so a deadline set above the socket bounds 64 KB of a
//     message, not the client's silence.
//   - Minimum rate: once a client has started sending something (a
//     command line, a message, a BDAT chunk), it must send MinRateBytes
//     within each MinRateInterval spent waiting for it, until the server
//     answers. Only time spent waiting in Read counts, so a slow spool or
//     policy never counts against the client. A client that drips a byte
//     a second is never idle, but it is closed with 421 4.4.2 after one
//     interval.
//   - Hard limits: SessionTimeout, and a deadline the layers above set
//     that is shorter than an idle interval (DATA's total budget,
//     DataTimeout, as it runs out) are kept as they are.
//
// A deadline the layers above set at about one idle interval is theirs to
// say "idle", and is replaced by the per-Read one. One set further out is
// a longer budget they grant on purpose (the rest of DATA's budget while
// go-smtp discards a refused body, so that its lines are never read as
// commands): it stands instead of the idle deadline, except under stress;
// the minimum rate still applies.

// rateError is the read error of a client below the minimum rate. It is a
// timeout, so go-smtp and the DATA reader answer 421 4.4.2 and close.
type rateError struct{}

func (rateError) Error() string   { return "transfer rate below the minimum" }
func (rateError) Timeout() bool   { return true }
func (rateError) Temporary() bool { return true }

var _ net.Error = rateError{}

// hardSlack is how far below an idle interval a deadline from above must
// fall to be taken as a hard limit: go-smtp computes its idle deadline a
// moment before the call, so a plain "now + ReadTimeout" arrives a little
// short of it.
func (o *Options) hardSlack() time.Duration {
	return o.ReadTimeout / 4
}

func (c *trackedConn) capDeadline(t time.Time) time.Time {
	if !c.end.IsZero() && (t.IsZero() || t.After(c.end)) {
		return c.end
	}
	return t
}

// SetDeadline sets the write deadline as given and the read deadline as
// SetReadDeadline does, without counting a command.
func (c *trackedConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.setUpperReadDeadline(t)
}

// SetReadDeadline counts a command outside a transaction (limits.go) and
// records t; see setUpperReadDeadline.
func (c *trackedConn) SetReadDeadline(t time.Time) error {
	if max := c.s.opts.MaxCommandsBeforeMail; max > 0 && !c.inTxn.Load() {
		if c.commands.Add(1) > int64(max) {
			c.s.log.Warn("connection closed: too many commands without a transaction", "client", c.ip)
			c.abort(replyTooManyCommands)
			return net.ErrClosed
		}
	}
	return c.setUpperReadDeadline(t)
}

// setUpperReadDeadline keeps t as a hard limit when it is shorter than an
// idle interval (or zero clears it); otherwise the per-Read idle deadline
// stands in for it. A hard limit applies to a Read in progress at once.
func (c *trackedConn) setUpperReadDeadline(t time.Time) error {
	now := time.Now()
	c.rmu.Lock()
	defer c.rmu.Unlock()
	idle, slack := c.s.opts.ReadTimeout, c.s.opts.hardSlack()
	c.hard, c.long = time.Time{}, time.Time{}
	switch {
	case t.IsZero():
		return nil
	case t.After(now.Add(idle + slack)):
		c.long = t
		return nil
	case !t.Before(now.Add(idle - slack)):
		return nil
	}
	c.hard = t
	if c.reading && t.Before(c.readDL) {
		c.readDL = t
		return c.Conn.SetReadDeadline(t)
	}
	return nil
}

// readDeadlineLocked is the deadline of a Read starting at now, and
// whether the minimum rate is what sets it.
func (c *trackedConn) readDeadlineLocked(now time.Time) (time.Time, bool) {
	dl := now.Add(c.s.idleTimeout())
	if !c.long.IsZero() && c.long.After(dl) && !c.s.stressed.Load() {
		dl = c.long
	}
	if !c.hard.IsZero() && c.hard.Before(dl) {
		dl = c.hard
	}
	if !c.end.IsZero() && c.end.Before(dl) {
		dl = c.end
	}
	o := &c.s.opts
	if o.MinRateBytes > 0 && c.active && c.winBytes < o.MinRateBytes {
		if r := now.Add(o.MinRateInterval - c.winWaited); r.Before(dl) {
			return r, true
		}
	}
	return dl, false
}

// Read pushes the read deadline forward before every read of the socket
// and keeps the rate window.
func (c *trackedConn) Read(p []byte) (int, error) {
	start := time.Now()
	c.rmu.Lock()
	if err := c.readErr; err != nil {
		c.rmu.Unlock()
		return 0, err
	}
	dl, byRate := c.readDeadlineLocked(start)
	c.reading, c.readStart, c.readDL = true, start, dl
	err := c.Conn.SetReadDeadline(dl)
	c.rmu.Unlock()
	if err != nil {
		return 0, err
	}

	n, err := c.Conn.Read(p)

	if c.account(start, n, err, byRate) {
		c.s.log.Warn("connection closed: transfer rate below the minimum", "client", c.ip,
			"min_bytes", c.s.opts.MinRateBytes, "interval", c.s.opts.MinRateInterval)
		c.s.rateClosed.Add(1)
		// The 421 goes out before the layers above see the error: they
		// may still hold a partial line to answer, which must not look
		// like the client's last word. Their replies then meet a closed
		// connection.
		c.abort(replyTooSlow)
		// The bytes of this read are dropped.
		return 0, rateError{}
	}
	if isTimeoutErr(err) {
		// A timeout ends the connection: reads fail from now on. With part
		// of a command line read, the 421 goes out first, as above: the
		// layers above would answer the fragment as if it were a command
		// and read on.
		c.rmu.Lock()
		c.readErr = err
		partial := c.active
		c.rmu.Unlock()
		if partial {
			c.abort(replyReadTimeout)
		}
		return 0, err
	}
	return n, err
}

// replyReadTimeout ends a connection that went idle in the middle of
// something (a command line, a message).
const replyReadTimeout = "421 4.4.2 timeout, closing connection"

// replyTooSlow ends a connection below the minimum rate.
const replyTooSlow = "421 4.4.2 transfer rate below the minimum, closing connection"

// account ends the Read begun at start in the rate window and reports
// whether the client has fallen below the minimum rate; from then on every
// Read fails.
func (c *trackedConn) account(start time.Time, n int, err error, byRate bool) bool {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.reading = false
	o := &c.s.opts
	if !c.active {
		// Waiting for a client to start is idle time, not transfer.
		if n > 0 {
			c.active, c.winWaited, c.winBytes = true, 0, int64(n)
		}
		return false
	}
	if o.MinRateBytes <= 0 {
		return false
	}
	c.winWaited += time.Since(start)
	c.winBytes += int64(n)
	slow := byRate && isTimeoutErr(err)
	if c.winWaited >= o.MinRateInterval {
		if c.winBytes < o.MinRateBytes {
			slow = true
		}
		c.winWaited, c.winBytes = 0, 0
	}
	if slow {
		c.readErr = rateError{}
	}
	return slow
}

// Write is the server answering: the client's turn to send starts anew,
// and with it the rate window.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.rmu.Lock()
	c.active, c.winWaited, c.winBytes = false, 0, 0
	c.rmu.Unlock()
	return c.Conn.Write(p)
}

// cutIdle shortens a Read waiting longer than idle so far to end at its
// start plus idle: under stress, connections that went quiet before the
// stress began go first, without waiting out their old idle timeout.
func (c *trackedConn) cutIdle(idle time.Duration) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if !c.reading {
		return
	}
	if dl := c.readStart.Add(idle); dl.Before(c.readDL) {
		c.readDL = dl
		_ = c.Conn.SetReadDeadline(dl)
	}
}

func isTimeoutErr(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
