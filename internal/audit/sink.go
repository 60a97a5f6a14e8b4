package audit

import (
	"context"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

// Metrics of every admission decision, updated by Record.
var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_admission_requests_total",
		Help: "Admission decisions by webhook (mutate or validate), operation (CREATE or UPDATE) and result (allowed, denied or error).",
	}, []string{"webhook", "operation", "result"})
	violationsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_admission_violations_total",
		Help: "Violated rules in denied admission requests (dry-run included), by rule ID.",
	}, []string{"rule"})
	durationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "nsprov_admission_duration_seconds",
		Help: "Time nsprov spent deciding an admission request (decoding and policy evaluation), by webhook.",
		// Up to 30s, the longest webhook timeout: a quantile above the highest
		// finite bucket reads as that bucket, so latency alerts need them.
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"webhook"})
)

// Defaults of Options.
const (
	// DefaultReportSize is how many results nsprov-admission-denials keeps. A
	// result takes about 0.5 to 1 KiB, so 1000 keeps the object well under
	// etcd's default limit of 1.5 MiB per object.
	DefaultReportSize = 1000
	// DefaultQueueSize is how many results may wait to be written.
	DefaultQueueSize = 10000
	// DefaultFlushInterval is how long the writer gathers a batch.
	DefaultFlushInterval = 2 * time.Second
	// DefaultRetryInterval is how long the writer waits after a failed write
	// at most, and between looks for the OpenReports CRD while it is missing.
	DefaultRetryInterval = 30 * time.Second
	// DefaultEventQueueSize, DefaultEventQPS and DefaultEventBurst bound the
	// NamespaceRequestDenied Events a replica emits.
	DefaultEventQueueSize = 1000
	DefaultEventQPS       = 10
	DefaultEventBurst     = 50
)

// Options configure a Sink and its Writer.
type Options struct {
	// DecisionLog receives one JSON line per admission decision. Nil turns
	// the decision log off; decisions then go to the process log as
	// admission.LogRecorder writes them (denials and errors at level 0).
	DecisionLog io.Writer
	// Logger receives the sink's and the writer's own messages (default:
	// discarded).
	Logger logr.Logger
	// ReportName is the ClusterReport of denials (default
	// nsprov-admission-denials).
	ReportName string
	// ReportSize is how many results the report keeps, newest first; older
	// ones are trimmed and counted as dropped (default DefaultReportSize).
	ReportSize int
	// QueueSize bounds the results waiting to be written; when it is full the
	// oldest are dropped and counted (default DefaultQueueSize).
	QueueSize int
	// FlushInterval is how long the writer gathers denials into one write
	// (default DefaultFlushInterval).
	FlushInterval time.Duration
	// RetryInterval is the longest wait after a failed write, and the wait
	// between looks for a missing OpenReports CRD (default
	// DefaultRetryInterval).
	RetryInterval time.Duration
	// EventQueueSize bounds the Events waiting to be emitted; a denial that
	// finds it full emits none (default DefaultEventQueueSize).
	EventQueueSize int
	// EventQPS and EventBurst bound how fast Events are emitted (default
	// DefaultEventQPS and DefaultEventBurst).
	EventQPS   float32
	EventBurst int
}

func (o Options) withDefaults() Options {
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	if o.ReportName == "" {
		o.ReportName = DenialsReportName
	}
	if o.ReportSize <= 0 {
		o.ReportSize = DefaultReportSize
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = DefaultFlushInterval
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = DefaultRetryInterval
	}
	if o.EventQueueSize <= 0 {
		o.EventQueueSize = DefaultEventQueueSize
	}
	if o.EventQPS <= 0 {
		o.EventQPS = DefaultEventQPS
	}
	if o.EventBurst <= 0 {
		o.EventBurst = DefaultEventBurst
	}
	return o
}

// Sink is the admission.Recorder of nsprov serve. For every decision it
// writes the decision log line and updates the metrics, in the caller's
// goroutine and without I/O beyond the log; for a denial that is not a dry
// run it queues one result per violated rule for the ClusterReport and an
// Event, both bounded and non-blocking. A Writer empties the queues.
type Sink struct {
	o      Options
	queue  *queue
	events chan deniedEvent

	logMu sync.Mutex
	// logFailed is set after a decision log write failed, so the failure is
	// reported once.
	logFailed bool
}

var _ admission.Recorder = (*Sink)(nil)

// NewSink returns a sink with its queues; nothing is written to the cluster
// until a Writer runs for it.
func NewSink(o Options) *Sink {
	registerMetrics()
	o = o.withDefaults()
	return &Sink{o: o, queue: newQueue(o.QueueSize), events: make(chan deniedEvent, o.EventQueueSize)}
}

// Pending is how many denial results are queued or being written.
func (s *Sink) Pending() int { return s.queue.pending() }

// deniedEvent is a NamespaceRequestDenied Event to emit.
type deniedEvent struct {
	namespace, operation, note string
}

// Record implements admission.Recorder. The record is bounded first
// (admission.BoundRecord), so what the sink stores is bounded too.
func (s *Sink) Record(ctx context.Context, r *admission.Record) {
	admission.BoundRecord(r)
	result := "allowed"
	switch {
	case r.Err != nil:
		result = "error"
	case !r.Allowed:
		result = "denied"
	}
	requestsCounter(r.Webhook, r.Operation, result).Inc()
	durationObserver(r.Webhook).Observe(r.Latency.Seconds())
	if result == "denied" {
		for _, v := range r.Violations {
			violationsTotal.WithLabelValues(v.Rule).Inc()
		}
	}
	if last := lastRevision.Load(); r.Revision != "" && (last == nil || *last != r.Revision) {
		rev := r.Revision
		lastRevision.Store(&rev)
	}
	s.log(ctx, r)
	if result != "denied" || r.DryRun || len(r.Violations) == 0 {
		return
	}
	ds := denials(r)
	if dropped := s.queue.push(ds...); dropped > 0 {
		droppedTotal.WithLabelValues(DropQueueFull).Add(float64(dropped))
	}
	rules := make([]string, len(ds))
	for i := range ds {
		rules[i] = ds[i].Rule
	}
	ev := deniedEvent{namespace: r.Namespace, operation: r.Operation, note: truncate(eventNote(r.Namespace, r.Operation, r.Username, rules), maxNote)}
	select {
	case s.events <- ev:
	default:
		eventsTotal.WithLabelValues("dropped").Inc()
	}
}

// Counters and observers of the usual label values, looked up once: finding
// one by its labels hashes them on every request. Other values (which a
// Record of nsprov's handlers does not carry) are looked up every time.
var (
	requestCounters   [2][2][3]atomic.Pointer[prometheus.Counter]
	durationObservers [2]atomic.Pointer[prometheus.Observer]
)

func webhookIndex(webhook string) int {
	switch webhook {
	case "mutate":
		return 0
	case "validate":
		return 1
	}
	return -1
}

func requestsCounter(webhook, operation, result string) prometheus.Counter {
	w, o, r := webhookIndex(webhook), -1, -1
	switch operation {
	case "CREATE":
		o = 0
	case "UPDATE":
		o = 1
	}
	switch result {
	case "allowed":
		r = 0
	case "denied":
		r = 1
	case "error":
		r = 2
	}
	if w < 0 || o < 0 || r < 0 {
		return requestsTotal.WithLabelValues(webhook, operation, result)
	}
	slot := &requestCounters[w][o][r]
	if c := slot.Load(); c != nil {
		return *c
	}
	c := requestsTotal.WithLabelValues(webhook, operation, result)
	slot.Store(&c)
	return c
}

func durationObserver(webhook string) prometheus.Observer {
	w := webhookIndex(webhook)
	if w < 0 {
		return durationSeconds.WithLabelValues(webhook)
	}
	slot := &durationObservers[w]
	if o := slot.Load(); o != nil {
		return *o
	}
	o := durationSeconds.WithLabelValues(webhook)
	slot.Store(&o)
	return o
}

// maxNote is the longest note events.k8s.io accepts (1 KiB).
const maxNote = 1024

func eventNote(namespace, operation, user string, rules []string) string {
	return "namespace " + namespace + ": " + operation + " by " + user + " denied by " + strings.Join(rules, ", ")
}

// denials turns a denied record into one denial per violated rule; the
// messages of a rule that is violated more than once are joined with "; ".
func denials(r *admission.Record) []denial {
	rules, messages := byRule(r.Violations)
	out := make([]denial, len(rules))
	for i, rule := range rules {
		out[i] = denial{
			Time: r.Time, UID: r.UID, Operation: r.Operation, Namespace: r.Namespace,
			Username: r.Username, Groups: r.Groups, Rule: rule, Message: messages[rule],
			Revision: r.Revision, ClientVerified: r.ClientVerified,
		}
	}
	return out
}

// byRule returns the violated rule IDs, sorted, and for each rule its
// messages joined with "; " (a rule can be violated more than once), within
// maxMessage bytes.
func byRule(violations []policy.Violation) ([]string, map[string]string) {
	joined := map[string]*strings.Builder{}
	var rules []string
	for _, v := range violations {
		sb, ok := joined[v.Rule]
		if !ok {
			sb = &strings.Builder{}
			joined[v.Rule] = sb
			rules = append(rules, v.Rule)
		} else if sb.Len() > maxMessage {
			continue
		} else {
			sb.WriteString("; ")
		}
		sb.WriteString(truncate(v.Message, maxMessage+1-min(sb.Len(), maxMessage)))
	}
	sort.Strings(rules)
	out := make(map[string]string, len(joined))
	for rule, sb := range joined {
		out[rule] = truncate(sb.String(), maxMessage)
	}
	return rules, out
}

// DecisionLogMessage is the msg of every decision log line.
const DecisionLogMessage = "admission decision"

func (s *Sink) log(ctx context.Context, r *admission.Record) {
	if s.o.DecisionLog == nil {
		admission.LogRecorder{}.Record(ctx, r)
		return
	}
	if r.Err != nil {
		logr.FromContextOrDiscard(ctx).Error(r.Err, "admission request failed", "webhook", r.Webhook, "uid", r.UID, "namespace", r.Namespace)
	}
	bp := lineBuffers.Get().(*[]byte)
	b := append(appendDecisionLine((*bp)[:0], r), '\n')
	s.logMu.Lock()
	_, err := s.o.DecisionLog.Write(b)
	failedBefore := s.logFailed
	s.logFailed = err != nil
	s.logMu.Unlock()
	if cap(b) <= maxDecisionLine {
		*bp = b
		lineBuffers.Put(bp)
	}
	if err != nil && !failedBefore {
		s.o.Logger.Error(err, "cannot write the decision log; decisions are still counted in the metrics")
	}
}

// maxDecisionLine bounds a decision log line: the record's bounded fields
// (at most admission.MaxRecordedViolations violations, admission.MaxGroups
// groups, admission.MaxWarnings warnings) and a truncated error.
const maxDecisionLine = 128 << 10

// truncate shortens s to at most n bytes, marking the cut.
func truncate(s string, n int) string { return admission.Truncate(s, n) }
