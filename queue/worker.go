package queue

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"appliance/retry"

	"github.com/emersion/go-smtp"
)

// work takes one busy entry as far as it can go now and reschedules it.
func (q *Queue) work(ctx context.Context, e *entry) {
	rec := e.rec
	var err error
	if rec.Phase == phaseReceived {
		err = q.seal(ctx, rec)
	} else if len(rec.unwritten) > 0 {
		// A DSN whose commit failed: it must be in the file before anything
		// is sent from it.
		err = q.sp.commit(rec)
	}
	if err == nil && rec.Phase == phaseSealed {
		err = q.deliverDue(ctx, rec)
	}
	finished := err == nil && rec.finished()
	if finished {
		if rerr := q.sp.remove(rec); rerr != nil {
			// The state says finished; Open removes it next time.
			q.log.Error("failed to remove finished message", "id", rec.ID, "err", rerr)
		} else {
			q.log.Info("finished", "id", rec.ID)
		}
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if finished {
		delete(q.entries, rec.ID)
		return
	}
	defer heap.Push(&q.ready, e)
	e.summarize()
	e.due = rec.nextDue()
	if err != nil {
		// A spool write failed: the disk state is older than rec. Reload
		// nothing; retry the step later from what is in memory, which is
		// at worst a repeat of work whose result was not recorded.
		q.log.Error("failed to record state", "id", rec.ID, "err", err)
		e.due = q.opts.Now().Add(q.opts.Retry[0])
	}
}

// temporary reports whether err says a retry may help (retry.IsTemporary);
// errors that do not say are temporary only when asked with def.
func temporary(err error, def bool) bool { return retry.IsTemporary(err, def) }

// backoff is the wait after the n-th failed attempt (n >= 1).
func (q *Queue) backoff(n int) time.Duration {
	return q.opts.Retry[min(n, len(q.opts.Retry))-1]
}

// seal runs the Processor and commits packages, refusals and their DSN. It
// changes rec only when the new state is on disk, so a failed write is
// retried from the old state.
func (q *Queue) seal(ctx context.Context, orig *record) error {
	c := *orig
	rec := &c
	if err := q.sealInto(ctx, rec); err != nil {
		return err
	}
	*orig = c
	return nil
}

func (q *Queue) sealInto(ctx context.Context, rec *record) error {
	now := q.opts.Now()
	expires := rec.Envelope.ReceivedAt.Add(q.opts.MaxAge)
	f, body, err := q.sp.openBody(rec)
	if err != nil {
		return err
	}
	sealed, perr := q.proc.Process(ctx, rec.ID, rec.Envelope, body)
	f.Close()
	if perr == nil {
		perr = checkSealed(sealed)
	}
	if perr != nil && ctx.Err() != nil {
		q.log.Info("parked", "id", rec.ID, "phase", rec.Phase)
		return nil
	}
	now = q.opts.Now()

	var dsnRcpts []*rcptRecord
	switch {
	case perr == nil:
		rec.Packages, rec.unwritten = nil, nil
		miss := uncovered(rec.Envelope.RcptTo, sealed)
		for i, p := range sealed.Packages {
			pr := &pkgRecord{N: i, MailFrom: p.MailFrom, ExpiresAt: expires, Mode: p.Mode, Profile: p.Profile, Silent: p.Silent}
			if p.Wait != nil {
				w := *p.Wait
				w.For = slices.Clone(w.For)
				if p.MailFrom != rec.Envelope.MailFrom {
					// Copies with a reverse path of their own (a list's members) are reported
					// to the sender as the envelope recipients they came from.
					w.Report = miss
				}
				pr.Wait = &w
			}
			np := newPackage{rec: pr, body: p.Body}
			if sb, ok := p.Body.(SharedBody); ok {
				if head, shared := sb.SplitBody(); shared != nil {
					np.body, np.shared = head, shared
				}
			}
			rec.unwritten = append(rec.unwritten, np)
			seen := make(map[string]bool, len(p.RcptTo))
			for _, r := range p.RcptTo {
				// Results are matched by address: one record per address.
				if !seen[r] {
					seen[r] = true
					pr.Rcpts = append(pr.Rcpts, &rcptRecord{Addr: r, State: rcptPending})
				}
			}
			rec.Packages = append(rec.Packages, pr)
		}
		for _, r := range sealed.Refused {
			dsnRcpts = append(dsnRcpts, &rcptRecord{
				Addr: r.Recipient, State: rcptFailed, Status: statusOr(r.Status, "5.0.0"),
				Diag: "smtp; 550 " + statusOr(r.Status, "5.0.0") + " " + r.Reason,
			})
		}
		// Accepted mail is delivered or bounced, never dropped silently. An
		// envelope recipient may legitimately be in no package (a list
		// address expanded to its members), so only a result with nothing
		// at all bounces; otherwise the gap is logged.
		if len(sealed.Packages) == 0 && len(sealed.Refused) == 0 {
			q.log.Error("processor returned no packages", "id", rec.ID)
			for _, r := range miss {
				dsnRcpts = append(dsnRcpts, &rcptRecord{Addr: r, State: rcptFailed, Status: "5.3.0",
					Diag: "X-Appliance; message could not be processed for this recipient"})
			}
		} else if len(miss) > 0 {
			q.log.Warn("envelope recipients in no package", "id", rec.ID, "count", len(miss))
		}
	case temporary(perr, false) && now.Before(expires):
		rec.Attempts++
		rec.LastError = perr.Error()
		rec.NextAttempt = minTime(now.Add(q.backoff(rec.Attempts)), expires)
		if err := q.sp.commit(rec); err != nil {
			return err
		}
		q.log.Warn("seal deferred", "id", rec.ID, "attempt", rec.Attempts, "next", rec.NextAttempt, "err", perr)
		return nil
	default:
		status, diag := "5.0.0", "X-Appliance; message could not be processed"
		if temporary(perr, false) {
			status, diag = "4.4.7", "X-Appliance; message expired, last error: temporary processing failure"
		}
		var se *smtp.SMTPError
		if errors.As(perr, &se) {
			status, diag = enhanced(se), "smtp; "+replyText(se)
		}
		for _, r := range rec.Envelope.RcptTo {
			dsnRcpts = append(dsnRcpts, &rcptRecord{Addr: r, State: rcptFailed, Status: status, Diag: diag})
		}
		// The reason may name HSM slots or files: it goes to the log only.
		q.log.Error("seal failed", "id", rec.ID, "err", perr)
	}

	rec.Phase = phaseSealed
	rec.NextAttempt = time.Time{}
	q.addDSN(rec, dsnRcpts, now)
	if err := q.sp.commit(rec); err != nil {
		return err
	}
	q.countFailed(len(dsnRcpts))
	q.log.Info("sealed", "id", rec.ID, "packages", len(rec.Packages), "refused", len(dsnRcpts))
	return nil
}

// uncovered lists envelope recipients in no package and no refusal
// (compared without case: the Processor may normalise addresses).
func uncovered(rcpts []string, s *Sealed) []string {
	seen := make(map[string]bool)
	for _, p := range s.Packages {
		for _, r := range p.RcptTo {
			seen[strings.ToLower(r)] = true
		}
	}
	for _, r := range s.Refused {
		seen[strings.ToLower(r.Recipient)] = true
	}
	var out []string
	for _, r := range rcpts {
		if !seen[strings.ToLower(r)] {
			out = append(out, r)
		}
	}
	return out
}

// checkSealed rejects a Processor result the queue cannot deliver.
func checkSealed(s *Sealed) error {
	if s == nil {
		return errors.New("failed to seal: processor returned nothing")
	}
	for i, p := range s.Packages {
		if len(p.RcptTo) == 0 || p.Body == nil {
			return fmt.Errorf("failed to seal: package %d has no recipients or no body", i)
		}
		if p.Wait == nil {
			continue
		}
		if len(p.Wait.For) == 0 {
			return fmt.Errorf("failed to seal: package %d waits for no package", i)
		}
		for _, n := range p.Wait.For {
			// One level only: a package waited for waits for nothing, so no cycle holds a
			// message forever.
			if n < 0 || n >= len(s.Packages) || n == i || s.Packages[n].Wait != nil {
				return fmt.Errorf("failed to seal: package %d waits for package %d", i, n)
			}
		}
	}
	return nil
}

// Wait holds a package back until the next hop has accepted every recipient of the packages it
// names ([journal] policy = "wait": a message's packages wait for its journal package). The
// decision is the Processor's, made once; the queue keeps it in the package's spool record and
// honours it on every attempt, after a restart too.
//
// When a package waited for fails (refused by the next hop, or expired), the waiting package is
// never sent: its pending recipients fail with Reason as the DSN's diagnostic, in the same
// commit as the failure that caused it. The DSN to the message's sender names the waiting
// package's recipients when the package has the sender's reverse path; a package with a reverse
// path of its own (a list member's copy) is reported as the envelope recipients in no package
// (Report: the list addresses), so the sender learns that the list post failed, not who is on
// the list. The package waited for is not named: its failure bounces to no one (see record).
type Wait struct {
	// For are the packages (indexes in Sealed.Packages) the next hop must have accepted first;
	// they wait for nothing themselves.
	For []int `json:"for"`
	// Reason is the diagnostic of the DSN when one of them fails; it goes to the message's
	// sender, so it must not name the package waited for.
	Reason string `json:"reason,omitempty"`
	// Report is set by the queue: see above.
	Report []string `json:"report,omitempty"`
}

// waitState says whether p is held (a package it waits for still has pending recipients) or
// failed (one of them has a failed recipient, or is missing: fail closed).
func (r *record) waitState(p *pkgRecord) (held, failed bool) {
	if p.Wait == nil {
		return false, false
	}
	for _, n := range p.Wait.For {
		w := r.pkg(n)
		if w == nil {
			failed = true
			continue
		}
		for _, rc := range w.Rcpts {
			switch rc.State {
			case rcptPending:
				held = true
			case rcptFailed:
				failed = true
			}
		}
	}
	return held, failed
}

// pkg is the sealed package numbered n, or nil. Sealed packages are numbered by their place in
// Packages (DSNs come after them), so this is O(1) however many packages a list post has.
func (r *record) pkg(n int) *pkgRecord {
	if n >= 0 && n < len(r.Packages) && r.Packages[n].N == n && !r.Packages[n].DSN {
		return r.Packages[n]
	}
	i := slices.IndexFunc(r.Packages, func(w *pkgRecord) bool { return w.N == n && !w.DSN })
	if i < 0 {
		return nil
	}
	return r.Packages[i]
}

// validWait reports whether p's wait names other packages of rec that wait for nothing, as
// checkSealed made sure when the packages were sealed: a spool record that says otherwise
// could hold the message forever.
func (r *record) validWait(p *pkgRecord) bool {
	if len(p.Wait.For) == 0 {
		return false
	}
	for _, n := range p.Wait.For {
		if w := r.pkg(n); w == nil || w == p || w.Wait != nil {
			return false
		}
	}
	return true
}

// held reports whether p may not be sent yet.
func (r *record) held(p *pkgRecord) bool {
	h, f := r.waitState(p)
	return h && !f
}

// failWaiting fails the pending recipients of every package whose wait failed, and returns
// what the DSN to the sender names for them (see Wait) and how many recipients failed. The
// caller commits rec.
func (q *Queue) failWaiting(rec *record) (dsn []*rcptRecord, n int) {
	reported := map[string]bool{}
	for _, p := range rec.Packages {
		if p.DSN || p.final() {
			continue
		}
		if _, failed := rec.waitState(p); !failed {
			continue
		}
		reason := p.Wait.Reason
		if reason == "" {
			reason = "not sent: a package it had to follow could not be delivered"
		}
		status, diag := "5.0.0", "X-Appliance; "+reason
		for _, r := range p.Rcpts {
			if r.State != rcptPending {
				continue
			}
			r.State, r.Status, r.Diag = rcptFailed, status, diag
			n++
			if q.opts.Outcome != nil {
				q.opts.Outcome(Outcome{Message: rec.ID, Package: p.N, Recipient: r.Addr, State: "failed", Err: errors.New(reason)})
			}
			if !p.Silent && p.MailFrom != "" && p.MailFrom == rec.Envelope.MailFrom && !reported[strings.ToLower(r.Addr)] {
				reported[strings.ToLower(r.Addr)] = true
				dsn = append(dsn, r)
			}
		}
		for _, a := range p.Wait.Report {
			if !reported[strings.ToLower(a)] {
				reported[strings.ToLower(a)] = true
				dsn = append(dsn, &rcptRecord{Addr: a, State: rcptFailed, Status: status, Diag: diag})
			}
		}
		q.log.Warn("package not sent: a package it waits for failed", "id", rec.ID, "package", p.N)
	}
	return dsn, n
}

// addDSN appends a DSN package for failed recipients (to the envelope
// sender, never to a null sender). The caller commits it with the state.
func (q *Queue) addDSN(rec *record, failed []*rcptRecord, now time.Time) {
	if len(failed) == 0 || rec.Envelope.MailFrom == "" {
		return
	}
	n := 0
	for _, p := range rec.Packages {
		n = max(n, p.N+1)
	}
	d := &dsn{
		hostname: q.opts.Hostname, id: rec.ID, seq: n, sender: rec.Envelope.MailFrom,
		arrival: rec.Envelope.ReceivedAt, now: now, rcpts: failed,
	}
	pr := &pkgRecord{
		N: n, MailFrom: "", DSN: true, ExpiresAt: now.Add(q.opts.MaxAge),
		Rcpts: []*rcptRecord{{Addr: rec.Envelope.MailFrom, State: rcptPending}},
	}
	rec.Packages = append(rec.Packages, pr)
	rec.unwritten = append(rec.unwritten, newPackage{rec: pr, body: d})
	q.mu.Lock()
	q.stats.DSNs++
	q.mu.Unlock()
	q.log.Info("dsn queued", "id", rec.ID, "package", n, "failed", len(failed))
}

func (q *Queue) countFailed(n int) {
	q.mu.Lock()
	q.stats.Failed += n
	q.mu.Unlock()
}

// DefaultPackageConcurrency is Options.PackageConcurrency when it is 0: the transactions of one
// message in flight at once. With Options.Workers messages in flight, a next hop sees up to
// Workers x PackageConcurrency connections, which is also how many idle ones are worth keeping
// for the next transactions (delivery.Options.MaxIdle).
const DefaultPackageConcurrency = 4

// deliverDue attempts every package whose time has come, up to
// Options.PackageConcurrency at once (a message split for hidden recipients
// can have many). Transactions run without the message's lock; each result
// is applied to rec under it and made durable by a group commit
// (resultCommit): results that end while a commit syncs share the next one,
// instead of each waiting for the lock through the fdatasyncs of all before it.
func (q *Queue) deliverDue(ctx context.Context, rec *record) error {
	var (
		mu       sync.Mutex // guards rec and firstErr
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, q.opts.PackageConcurrency)
		rc       = newResultCommit(q, rec, &mu)
	)
	now := q.opts.Now()
	// A wait that failed before (a state from before the failure was recorded with it) fails
	// its packages now, before anything else is sent.
	if dsn, n := q.failWaiting(rec); n > 0 {
		q.addDSN(rec, dsn, now)
		if err := q.sp.commit(rec); err != nil {
			return err
		}
		q.countFailed(n)
	}
	var due []*pkgRecord
	unwritten := make(map[*pkgRecord]bool, len(rec.unwritten))
	for _, p := range rec.unwritten {
		unwritten[p.rec] = true
	}
	for _, p := range rec.Packages {
		if !p.final() && !p.NextAttempt.After(now) && !unwritten[p] && !rec.held(p) {
			due = append(due, p)
		}
	}
	for _, p := range due {
		slots <- struct{}{}
		mu.Lock()
		stop := firstErr != nil
		rcpts := p.pending()
		mu.Unlock()
		if stop || ctx.Err() != nil {
			<-slots
			break
		}
		wg.Go(func() {
			// The slot is held until the result is durable: at a crash, at most
			// PackageConcurrency transactions of a message are delivered and not recorded
			// (sent again after the restart), as when each result committed alone.
			defer func() { <-slots }()
			results, derr := q.deliverOne(ctx, rec, p, rcpts)
			if derr != nil && ctx.Err() != nil {
				q.log.Info("parked", "id", rec.ID, "package", p.N)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if firstErr != nil {
				return
			}
			report := q.apply(rec, p, rcpts, results, derr)
			if err := rc.commit(); err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			report()
		})
	}
	wg.Wait()
	return firstErr
}

// resultCommit is the group commit of one message's delivery results. A result is applied to
// the record in memory under the message's lock; commit then returns once a commit that began
// after that is durable. The commit writes under the lock and syncs without it, so the
// transactions that end during an fdatasync apply their results meanwhile, and the next commit
// covers all of them: one fdatasync for several results instead of one each, in a row. What is
// on disk is what a sequence of single-result commits would have left (each commit is a whole
// state, written after the last one is durable); a result applied and not yet durable at a
// crash is that package sent again (at least once, as before; its transaction's slot is held
// until the commit, so no more of them than PackageConcurrency per message), and nothing is
// acknowledged before its commit: counts and log lines come after it.
type resultCommit struct {
	q       *Queue
	rec     *record
	mu      *sync.Mutex // the message's: guards rec and the fields below
	cond    *sync.Cond
	applied uint64 // results applied to rec
	durable uint64 // results covered by a finished commit
	running bool   // a commit is in progress
	err     error  // a failed commit: the disk is behind rec, nothing more is tried
}

func newResultCommit(q *Queue, rec *record, mu *sync.Mutex) *resultCommit {
	return &resultCommit{q: q, rec: rec, mu: mu, cond: sync.NewCond(mu)}
}

// commit makes every result applied so far durable. The caller holds the lock, which commit
// releases while it waits or syncs.
func (c *resultCommit) commit() error {
	c.applied++
	mine := c.applied
	for c.running && c.durable < mine && c.err == nil {
		c.cond.Wait()
	}
	if c.err != nil {
		return c.err
	}
	if c.durable >= mine {
		return nil
	}
	// Lead a commit of everything applied until now; results applied while it syncs wait for
	// the next one.
	c.running = true
	upto := c.applied
	err := c.write()
	c.running = false
	if err != nil {
		c.err = err
	} else {
		c.durable = upto
	}
	c.cond.Broadcast()
	return err
}

// write commits rec, unlocking for the fdatasync. The last result of a message commits by
// removing it: a directory fsync instead of writing a final state.
func (c *resultCommit) write() error {
	if c.rec.finished() {
		return c.q.sp.remove(c.rec)
	}
	pc, err := c.q.sp.prepareCommit(c.rec)
	if err != nil {
		return err
	}
	c.mu.Unlock()
	err = pc.sync()
	c.mu.Lock()
	if err != nil {
		return err
	}
	pc.done()
	return nil
}

func (q *Queue) deliverOne(ctx context.Context, rec *record, p *pkgRecord, rcpts []string) ([]RcptResult, error) {
	f, body, err := q.sp.openPackage(rec, p)
	if err != nil {
		// Reported like a transaction failure: retried, and bounced at
		// expiry, rather than stalling the whole message.
		return nil, err
	}
	defer f.Close()
	return q.dlv.Deliver(ctx, p.MailFrom, rcpts, body)
}

// apply applies one transaction's outcome to p in memory, with a DSN for recipients that
// failed, for the next commit to write. The caller holds the message's lock; report counts and
// logs the outcome once the commit is durable.
func (q *Queue) apply(rec *record, p *pkgRecord, rcpts []string, results []RcptResult, derr error) (report func()) {
	now := q.opts.Now()
	byAddr := make(map[string]*rcptRecord, len(p.Rcpts))
	for _, r := range p.Rcpts {
		byAddr[r.Addr] = r
	}
	outcome := make(map[string]error, len(rcpts))
	if derr != nil {
		for _, r := range rcpts {
			outcome[r] = derr
		}
	} else {
		for _, r := range rcpts {
			outcome[r] = errors.New("no result from deliverer")
		}
		for _, res := range results {
			if _, ok := outcome[res.Rcpt]; ok {
				outcome[res.Rcpt] = res.Err
			}
		}
	}

	var failed []*rcptRecord
	delivered, deferred := 0, 0
	var lastTemp error
	expired := !now.Before(p.ExpiresAt)
	for _, addr := range rcpts {
		r, err := byAddr[addr], outcome[addr]
		switch {
		case err == nil:
			r.State = rcptDelivered
			delivered++
		case temporary(err, true) && !expired:
			deferred++
			lastTemp = err
		default:
			r.State = rcptFailed
			r.Status, r.Diag = failure(err, expired)
			failed = append(failed, r)
		}
	}
	if q.opts.Outcome != nil && !p.DSN {
		for _, addr := range rcpts {
			q.opts.Outcome(Outcome{Message: rec.ID, Package: p.N, Recipient: addr, State: outcomeState(byAddr[addr], outcome[addr]), Err: outcome[addr]})
		}
	}
	if deferred > 0 {
		p.Attempts++
		p.LastError = lastTemp.Error()
		p.NextAttempt = minTime(now.Add(q.backoff(p.Attempts)), p.ExpiresAt)
	}
	// A package sent with a null reverse path (a list member's copy) bounces to no one: a DSN to
	// the message's sender would name a member the sender must not learn of.
	// Nor does a package with a reverse path of its own, or a silent one (the journal's): the DSN
	// would name the journal address to the message's sender.
	var dsn []*rcptRecord
	if !p.DSN && !p.Silent && p.MailFrom != "" && p.MailFrom == rec.Envelope.MailFrom {
		dsn = failed
	}
	// Packages waiting for this one fail with it, in the same commit and the same DSN (looked
	// for only when something failed in a package that may be waited for, one that waits for
	// nothing: a list's thousands of waiting member copies do not scan each other).
	var waitDSN []*rcptRecord
	waitFailed := 0
	if len(failed) > 0 && p.Wait == nil && !p.DSN {
		waitDSN, waitFailed = q.failWaiting(rec)
	}
	q.addDSN(rec, append(dsn, waitDSN...), now)
	attrs := []any{"id", rec.ID, "package", p.N, "delivered", delivered, "deferred", deferred, "failed", len(failed)}
	if deferred > 0 {
		attrs = append(attrs, "attempt", p.Attempts, "next", p.NextAttempt, "err", lastTemp)
	}
	nfailed := len(failed) + waitFailed
	return func() {
		q.mu.Lock()
		q.stats.Delivered += delivered
		q.stats.Failed += nfailed
		q.mu.Unlock()
		switch {
		case deferred > 0:
			q.log.Warn("delivery deferred", attrs...)
		case len(failed) > 0:
			q.log.Warn("delivery failed", attrs...)
		default:
			q.log.Info("delivered", attrs...)
		}
	}
}

// failure gives the DSN Status and Diagnostic-Code for a recipient's error.
func failure(err error, expired bool) (status, diag string) {
	var se *smtp.SMTPError
	hasReply := errors.As(err, &se)
	switch {
	case hasReply && !expired:
		return enhanced(se), "smtp; " + replyText(se)
	case hasReply:
		return "4.4.7", "smtp; " + replyText(se)
	case expired:
		return "4.4.7", "X-Appliance; delivery time expired, last error: " + err.Error()
	default:
		return "5.0.0", "X-Appliance; " + err.Error()
	}
}

func enhanced(se *smtp.SMTPError) string {
	c := se.EnhancedCode
	if c == (smtp.EnhancedCode{}) || c == smtp.NoEnhancedCode {
		return fmt.Sprintf("%d.0.0", se.Code/100)
	}
	return fmt.Sprintf("%d.%d.%d", c[0], c[1], c[2])
}

func replyText(se *smtp.SMTPError) string {
	return fmt.Sprintf("%d %s %s", se.Code, enhanced(se), se.Message)
}

func statusOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// outcomeState names a recipient's state after a delivery attempt for Options.Outcome.
func outcomeState(r *rcptRecord, err error) string {
	switch {
	case err == nil:
		return "delivered"
	case r.State == rcptFailed:
		return "failed"
	}
	return "deferred"
}
