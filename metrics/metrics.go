// Package metrics is the appliance's Prometheus surface: counters, gauges and latency histograms,
// and an HTTP handler that serves them with /healthz and /readyz on a listener of its own.
//
// It knows nothing of the other packages. What the pipeline did (a message classified or
// refused, a package sealed, a list expanded) comes from the events the pipeline emits
// (pipeline.Events), which the daemon's wiring subscribes to; what happens elsewhere it learns
// by wrapping the interfaces where packages meet (the queue's Deliverer, the front end's
// Spooler and Policy, the HSM token the pipeline gets). No core package imports metrics and a
// daemon without [metrics] pays nothing. Every method is safe on a nil *Metrics (it does
// nothing), which keeps the wrappers free of "is it on" checks.
//
// Label values are fixed small sets (reasons, results, operation kinds): never a recipient's
// address, a message id or a key label, so the series count cannot grow with traffic and a scrape
// reveals no recipient. The one address used as a label is a configured mail list's own, a fixed
// set that posters know anyway; it names no member. Every series of a known label set exists from the start at zero, so a dashboard or a
// test can tell "nothing happened" from "not measured".
//
// # Series
//
//	appliance_messages_received_total                      messages spooled (answered 250)
//	appliance_messages_refused_total{reason}               refusals at SMTP time, per command refused
//	appliance_messages_classified_total{class}             spooled messages by what the classifier said
//	appliance_messages_content_refused_total{stage,reason} messages refused for their content, at end
//	                                                       of DATA (stage data) or sealing (stage seal)
//	appliance_packages_sealed_total{mode,profile}          packages written to the spool (mode journal:
//	                                                       the journal packages, counted by compliance)
//	appliance_hsm_operations_total{op,result}              token calls
//	appliance_hsm_operation_duration_seconds{op}           their latency
//	appliance_delivery_attempts_total{result}              SMTP transactions to the next hop
//	appliance_directory_lookups_total{result}              RCPT-time certificate lookups, hit or miss
//	appliance_queue_messages{state}                        spool contents now (from queue.Stats)
//	appliance_queue_packages{state}
//	appliance_queue_recipients_total{result}               delivered/failed since start
//	appliance_queue_dsns_total                             DSNs generated since start
//	appliance_smtp_connections{origin}                     front-end connections open (trusted, other)
//	appliance_smtp_stress                                  1 under stress (stress_connections reached)
//	appliance_smtp_stress_entered_total
//	appliance_smtp_connections_refused_total{limit}        421 4.7.0 at connect (global, per_address)
//	appliance_smtp_rate_closed_total                       421 4.4.2 below the minimum transfer rate
//	appliance_smtp_mail_shed_total{reason}                 451 4.3.2 at MAIL by load shedding
//	appliance_list_members_skipped_total{list,reason}      list members given no package of a post
//	                                                       (no_certificate, unusable_certificate);
//	                                                       registered by the daemon for its lists
package metrics

import (
	"sync"
	"time"

	"appliance/retry"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Refusal reasons for [Metrics.Refused].
const (
	ReasonSender      = "sender_not_authorized" // MAIL FROM or header From not a configured sender
	ReasonNoCert      = "no_certificate"        // RCPT refused: no valid certificate (missing_cert = reject)
	ReasonPolicy      = "policy"                // another policy refusal
	ReasonTooBig      = "too_big"               // over max_message_bytes
	ReasonMalformed   = "malformed"             // a message the front end could not parse
	ReasonSpoolFull   = "spool_full"            // the spool could not take it (452 4.3.1)
	ReasonTemporary   = "temporary"             // any other temporary failure (451)
	ReasonOther       = "other"                 // anything else (554)
	ReasonBadAddress  = "bad_address"           // address syntax
	ReasonTooManyRcpt = "too_many_recipients"
	// ReasonContent: DATA refused for the message's content (the pipeline's classification);
	// appliance_messages_content_refused_total says why.
	ReasonContent = "content"
)

var reasons = []string{ReasonSender, ReasonNoCert, ReasonPolicy, ReasonTooBig, ReasonMalformed,
	ReasonSpoolFull, ReasonTemporary, ReasonOther, ReasonBadAddress, ReasonTooManyRcpt, ReasonContent}

// Message classes for [Metrics.Classified], as the classifier names them.
var Classes = []string{"plain", "client-encrypted", "signed-over-encrypted", "refused"}

// Stages and reasons for [Metrics.ContentRefused], as the pipeline names them
// (pipeline.StageData, pipeline.Reason*).
var (
	Stages         = []string{"data", "seal"}
	ContentReasons = []string{"unaccountable", "malformed", "signed_over_encrypted", "recipientinfo_rejected",
		"unsplittable", "sender", "too_big", "other"}
)

// Sealing modes and profiles for [Metrics.Sealed].
const (
	ModeEncrypted   = "encrypted"   // signed on the HSM and encrypted
	ModeSigned      = "signed"      // signed only (missing_cert = plaintext)
	ModePassThrough = "passthrough" // client-encrypted, RecipientInfos subset, not re-encrypted
	ModeJournal     = "journal"     // the journal package, encrypted for the journal certificates
	ModeOther       = "other"       // anything else the pipeline produced

	ProfileCompat = "compat" // EnvelopedData, AES-CBC
	ProfileModern = "modern" // AuthEnvelopedData, AES-GCM
	ProfileNone   = "none"   // not encrypted
)

// HSM operation kinds for [Metrics.HSM].
const (
	OpGenerateCEK = "generate_cek"
	OpEncrypt     = "encrypt"
	OpWrap        = "wrap"
	OpUnwrap      = "unwrap"
	OpSign        = "sign"
	OpFindKey     = "find_key"
	OpDestroy     = "destroy"
	OpProbe       = "probe" // readiness checks
)

var hsmOps = []string{OpGenerateCEK, OpEncrypt, OpWrap, OpUnwrap, OpSign, OpFindKey, OpDestroy, OpProbe}

// Results of an HSM operation or a delivery attempt.
const (
	ResultOK        = "ok"
	ResultTemporary = "temporary" // the error says Temporary() true: the work is retried
	ResultPermanent = "permanent"
	// Delivery only: the transaction completed but the next hop refused some (partial) or all
	// (refused) recipients.
	ResultPartial = "partial"
	ResultRefused = "refused"
)

// Directory lookup results.
const (
	LookupHit  = "hit"
	LookupMiss = "miss"
)

// Metrics holds the appliance's collectors in a registry of its own (not Prometheus's global
// one, so tests and several instances in one process do not collide).
type Metrics struct {
	reg        *prometheus.Registry
	received   prometheus.Counter
	refused    *prometheus.CounterVec
	classified *prometheus.CounterVec
	content    *prometheus.CounterVec
	sealed     *prometheus.CounterVec
	hsmOps     *prometheus.CounterVec
	hsmLatency *prometheus.HistogramVec
	deliveries *prometheus.CounterVec
	lookups    *prometheus.CounterVec

	queueOnce sync.Once
	frontOnce sync.Once
}

// New makes the collectors, with Go runtime and process metrics alongside.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "appliance_messages_received_total",
		Help: "Messages accepted and durably spooled (answered 250).",
	})
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_messages_refused_total",
		Help: "SMTP commands refused, by reason: a refused RCPT counts once per recipient, a refused MAIL or DATA once per message.",
	}, []string{"reason"})
	m.classified = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_messages_classified_total",
		Help: "Spooled messages by class when sealing began: plain, client-encrypted, signed-over-encrypted or refused.",
	}, []string{"class"})
	m.content = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_messages_content_refused_total",
		Help: "Messages refused for their content, by stage (data: answered 5xx at end of DATA; seal: a DSN after spooling) and reason.",
	}, []string{"stage", "reason"})
	m.sealed = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_packages_sealed_total",
		Help: "Packages (outgoing SMTP transactions) sealed and spooled, by mode and content profile.",
	}, []string{"mode", "profile"})
	m.hsmOps = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_hsm_operations_total",
		Help: "PKCS#11 token operations by kind and result.",
	}, []string{"op", "result"})
	m.hsmLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "appliance_hsm_operation_duration_seconds",
		Help: "Latency of PKCS#11 token operations by kind (failures included).",
		// A wrap takes ~0.1 ms and an RSA signature ~1 ms on SoftHSM2; a network HSM or a
		// starved session pool takes up to seconds.
		Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10),
	}, []string{"op"})
	m.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_delivery_attempts_total",
		Help: "SMTP transactions attempted with the next hop, by result.",
	}, []string{"result"})
	m.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "appliance_directory_lookups_total",
		Help: "Recipient certificate lookups made when a recipient is offered (RCPT, under missing_cert = reject), by whether a valid certificate was found.",
	}, []string{"result"})

	for _, r := range reasons {
		m.refused.WithLabelValues(r)
	}
	for _, c := range Classes {
		m.classified.WithLabelValues(c)
	}
	for _, st := range Stages {
		for _, r := range ContentReasons {
			m.content.WithLabelValues(st, r)
		}
	}
	for _, mode := range []string{ModeEncrypted, ModePassThrough, ModeJournal} {
		for _, p := range []string{ProfileCompat, ProfileModern} {
			m.sealed.WithLabelValues(mode, p)
		}
	}
	m.sealed.WithLabelValues(ModeSigned, ProfileNone)
	for _, op := range hsmOps {
		m.hsmLatency.WithLabelValues(op)
		for _, r := range []string{ResultOK, ResultTemporary, ResultPermanent} {
			m.hsmOps.WithLabelValues(op, r)
		}
	}
	for _, r := range []string{ResultOK, ResultPartial, ResultRefused, ResultTemporary, ResultPermanent} {
		m.deliveries.WithLabelValues(r)
	}
	m.lookups.WithLabelValues(LookupHit)
	m.lookups.WithLabelValues(LookupMiss)

	m.reg.MustRegister(m.received, m.refused, m.classified, m.content, m.sealed, m.hsmOps, m.hsmLatency, m.deliveries, m.lookups,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the collectors live, for a caller that wants to add its own or gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Received counts a message durably spooled.
func (m *Metrics) Received() {
	if m != nil {
		m.received.Inc()
	}
}

// Refused counts one refusal with one of the Reason* constants.
func (m *Metrics) Refused(reason string) {
	if m != nil {
		m.refused.WithLabelValues(reason).Inc()
	}
}

// Classified counts one spooled message by its class (Classes).
func (m *Metrics) Classified(class string) {
	if m != nil {
		m.classified.WithLabelValues(class).Inc()
	}
}

// ContentRefused counts one message refused for its content at a stage (Stages), for a reason
// (ContentReasons).
func (m *Metrics) ContentRefused(stage, reason string) {
	if m != nil {
		m.content.WithLabelValues(stage, reason).Inc()
	}
}

// Sealed counts one package by Mode* and Profile* constants.
func (m *Metrics) Sealed(mode, profile string) {
	if m != nil {
		m.sealed.WithLabelValues(mode, profile).Inc()
	}
}

// HSM counts one token operation (an Op* constant) and observes its latency; err sorts the result
// (see [Result]).
func (m *Metrics) HSM(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.hsmOps.WithLabelValues(op, Result(err)).Inc()
	m.hsmLatency.WithLabelValues(op).Observe(d.Seconds())
}

// Delivery counts one transaction with the next hop; result is one of the Result* constants.
func (m *Metrics) Delivery(result string) {
	if m != nil {
		m.deliveries.WithLabelValues(result).Inc()
	}
}

// Lookup counts one directory lookup.
func (m *Metrics) Lookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.lookups.WithLabelValues(LookupHit).Inc()
	} else {
		m.lookups.WithLabelValues(LookupMiss).Inc()
	}
}

// Result sorts an error as the queue does (retry.IsTemporary): nil is "ok", a temporary error
// "temporary", any other error "permanent".
func Result(err error) string {
	switch {
	case err == nil:
		return ResultOK
	case retry.IsTemporary(err, false):
		return ResultTemporary
	}
	return ResultPermanent
}

// QueueStats is what the queue reports about itself, in the queue's terms (queue.Stats).
type QueueStats struct {
	Messages     int // unfinished messages in the spool
	Received     int // not yet sealed
	SealDeferred int // of Received, those whose sealing failed at least once
	Pending      int // packages waiting for an attempt
	Deferred     int // of Pending, those that failed at least once
	Delivered    int // recipients delivered since start
	Failed       int // recipients failed permanently since start
	DSNs         int // DSNs created since start
}

// ObserveQueue registers gauges read from stats at every scrape; stats must be cheap and safe
// for concurrent use. Only the first call has an effect.
func (m *Metrics) ObserveQueue(stats func() QueueStats) {
	if m == nil {
		return
	}
	m.queueOnce.Do(func() { m.reg.MustRegister(&queueCollector{stats: stats}) })
}

var (
	queueMessagesDesc = prometheus.NewDesc("appliance_queue_messages",
		"Unfinished messages in the spool by state: received (not sealed yet; seal_deferred of those failed to seal at least once) or sealed (packages pending).",
		[]string{"state"}, nil)
	queuePackagesDesc = prometheus.NewDesc("appliance_queue_packages",
		"Packages waiting in the spool by state: pending (no failed attempt yet) or deferred (failed at least once, waiting for a retry).",
		[]string{"state"}, nil)
	queueRecipientsDesc = prometheus.NewDesc("appliance_queue_recipients_total",
		"Package recipients finished since start: delivered, or failed permanently (reported by DSN).",
		[]string{"result"}, nil)
	queueDSNsDesc = prometheus.NewDesc("appliance_queue_dsns_total",
		"DSN packages created since start.", nil, nil)
)

// queueCollector reads one snapshot per scrape, so the states add up within a scrape.
type queueCollector struct{ stats func() QueueStats }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueMessagesDesc
	ch <- queuePackagesDesc
	ch <- queueRecipientsDesc
	ch <- queueDSNsDesc
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	gauge := func(d *prometheus.Desc, v int, label string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), label)
	}
	gauge(queueMessagesDesc, s.Received-s.SealDeferred, "received")
	gauge(queueMessagesDesc, s.SealDeferred, "seal_deferred")
	gauge(queueMessagesDesc, s.Messages-s.Received, "sealed")
	gauge(queuePackagesDesc, s.Pending-s.Deferred, "pending")
	gauge(queuePackagesDesc, s.Deferred, "deferred")
	ch <- prometheus.MustNewConstMetric(queueRecipientsDesc, prometheus.CounterValue, float64(s.Delivered), "delivered")
	ch <- prometheus.MustNewConstMetric(queueRecipientsDesc, prometheus.CounterValue, float64(s.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(queueDSNsDesc, prometheus.CounterValue, float64(s.DSNs))
}
