package smtpfront

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Load shedding: while the spool, the memory or the backlog of messages
// waiting for the HSM is past its threshold, a new MAIL is answered 451
// 4.3.2 (system not accepting network messages, RFC 3463) before anything
// of the message is read, instead of accepting mail that cannot be sealed
// soon. Transactions already past MAIL and messages already spooled are
// not affected: only MAIL outside a transaction asks.
//
// The load is sampled at most once per LoadLimits.Every, so a MAIL costs a
// lock and a time comparison; the log says when shedding begins (with the
// reason and the numbers) and when it ends, and [LoadShedder.Counts]
// tallies the refused MAILs per reason for metrics.

// Reasons a MAIL is shed, as [LoadShedder.Counts] and metrics name them.
const (
	ShedSpoolMessages = "spool_messages"
	ShedSpoolBytes    = "spool_bytes"
	ShedMemory        = "memory"
	ShedHSMBacklog    = "hsm_backlog"
)

// ShedReasons lists every reason, for series that exist from the start.
var ShedReasons = []string{ShedSpoolMessages, ShedSpoolBytes, ShedMemory, ShedHSMBacklog}

// LoadLimits are the shedding thresholds; zero or negative turns one off.
type LoadLimits struct {
	SpoolMessages int    // unfinished messages in the spool
	SpoolBytes    int64  // bytes in the spool
	HeapBytes     uint64 // Go heap in use
	HSMBacklog    int    // messages received and not yet sealed
	// Every is how long a sample is reused; default 1s, negative: never.
	Every time.Duration
}

// LoadSource reports the load; a nil func is not asked. HeapBytes
// defaults to the runtime's count of live heap objects.
type LoadSource struct {
	SpoolMessages func() int
	SpoolBytes    func() int64
	HSMBacklog    func() int
	HeapBytes     func() uint64
}

// LoadShedder decides whether a new transaction is taken. It is safe for
// concurrent use.
type LoadShedder struct {
	lim LoadLimits
	src LoadSource
	log *slog.Logger

	mu       sync.Mutex
	sampled  time.Time
	reason   string // "" while not shedding
	detail   string
	counts   map[string]uint64
	shedding bool
}

// NewLoadShedder returns a shedder for lim fed by src; log (nil: the
// server's it is given to) gets a line when shedding begins and ends.
func NewLoadShedder(lim LoadLimits, src LoadSource, log *slog.Logger) *LoadShedder {
	if lim.Every == 0 {
		lim.Every = time.Second
	}
	if src.HeapBytes == nil {
		src.HeapBytes = heapBytes
	}
	counts := make(map[string]uint64, len(ShedReasons))
	for _, r := range ShedReasons {
		counts[r] = 0
	}
	return &LoadShedder{lim: lim, src: src, log: log, counts: counts}
}

// OverloadError refuses a MAIL while shedding; it carries 451 4.3.2.
type OverloadError struct {
	Reason string // one of ShedReasons
	Detail string // the numbers, for the log
}

var replyOverloaded = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
	Message: "system overloaded, try again later"}

func (e *OverloadError) Error() string {
	return "failed to take new mail: overloaded (" + e.Reason + ": " + e.Detail + ")"
}

// Unwrap gives the reply, so [Reply] answers with it.
func (e *OverloadError) Unwrap() error { return replyOverloaded }

// Check returns an *OverloadError while a threshold is passed, else nil.
// Each error counts as one refused MAIL.
func (l *LoadShedder) Check() error {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lim.Every < 0 || l.sampled.IsZero() || now.Sub(l.sampled) >= l.lim.Every {
		l.sampled = now
		reason, detail := l.sample()
		switch {
		case reason != "" && !l.shedding:
			l.logger().Warn("load shedding: new mail refused with 451 4.3.2", "reason", reason, "detail", detail)
		case reason == "" && l.shedding:
			l.logger().Info("load shedding ended: new mail taken again", "was", l.reason)
		}
		l.shedding, l.reason, l.detail = reason != "", reason, detail
	}
	if !l.shedding {
		return nil
	}
	l.counts[l.reason]++
	return &OverloadError{Reason: l.reason, Detail: l.detail}
}

func (l *LoadShedder) logger() *slog.Logger {
	if l.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.log
}

func (l *LoadShedder) sample() (reason, detail string) {
	if lim := l.lim.HSMBacklog; lim > 0 && l.src.HSMBacklog != nil {
		if n := l.src.HSMBacklog(); n >= lim {
			return ShedHSMBacklog, fmt.Sprintf("%d messages wait for sealing, threshold %d", n, lim)
		}
	}
	if lim := l.lim.SpoolMessages; lim > 0 && l.src.SpoolMessages != nil {
		if n := l.src.SpoolMessages(); n >= lim {
			return ShedSpoolMessages, fmt.Sprintf("%d messages in the spool, threshold %d", n, lim)
		}
	}
	if lim := l.lim.SpoolBytes; lim > 0 && l.src.SpoolBytes != nil {
		if n := l.src.SpoolBytes(); n >= lim {
			return ShedSpoolBytes, fmt.Sprintf("%d bytes in the spool, threshold %d", n, lim)
		}
	}
	if lim := l.lim.HeapBytes; lim > 0 {
		if n := l.src.HeapBytes(); n >= lim {
			return ShedMemory, fmt.Sprintf("%d bytes of heap in use, threshold %d", n, lim)
		}
	}
	return "", ""
}

// Counts returns the MAILs refused per reason since start.
func (l *LoadShedder) Counts() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, len(l.counts))
	for k, v := range l.counts {
		out[k] = v
	}
	return out
}

// Shedding reports the current reason, "" when mail is taken.
func (l *LoadShedder) Shedding() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reason
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// shedPolicy asks the shedder before the policy at MAIL; a header sender
// checked at the end of DATA belongs to a transaction already taken.
type shedPolicy struct {
	Policy
	l *LoadShedder
}

func (p shedPolicy) CheckSender(ctx context.Context, mailFrom, authUser string) error {
	if tc := connOf(ctx); tc == nil || !tc.inTxn.Load() {
		if err := p.l.Check(); err != nil {
			return err
		}
	}
	return p.Policy.CheckSender(ctx, mailFrom, authUser)
}

// shedListPolicy keeps a ListPolicy one through the wrapping.
type shedListPolicy struct {
	shedPolicy
	lp ListPolicy
}

func (p shedListPolicy) IsList(addr string) bool { return p.lp.IsList(addr) }
func (p shedListPolicy) CheckPoster(ctx context.Context, list, mailFrom string) error {
	return p.lp.CheckPoster(ctx, list, mailFrom)
}

func withShedding(p Policy, l *LoadShedder, log *slog.Logger) Policy {
	if l == nil {
		return p
	}
	l.mu.Lock()
	if l.log == nil {
		l.log = log
	}
	l.mu.Unlock()
	sp := shedPolicy{Policy: p, l: l}
	if lp, ok := p.(ListPolicy); ok {
		return shedListPolicy{shedPolicy: sp, lp: lp}
	}
	return sp
}
