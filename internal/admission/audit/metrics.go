package audit

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/policy"
)

// Reasons of nsprov_audit_records_dropped_total.
const (
	// DropQueueFull: the queue of unwritten results was full and its oldest
	// entries made room for new ones.
	DropQueueFull = "queue-full"
	// DropReportBound: the result was trimmed from the report (or never
	// entered it) because the report keeps only the newest ReportSize results.
	DropReportBound = "report-bound"
)

// The metrics, registered with controller-runtime's registry (served on the
// manager's metrics endpoint) when the package is loaded.
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
		Name:    "nsprov_admission_duration_seconds",
		Help:    "Time nsprov spent deciding an admission request (decoding and policy evaluation), by webhook.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
	}, []string{"webhook"})
	droppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_records_dropped_total",
		Help: "Denial results (one per violated rule) that are not kept in the nsprov-admission-denials ClusterReport, by reason: queue-full (the write queue overflowed) or report-bound (trimmed to keep the newest --audit-report-size results).",
	}, []string{"reason"})
	persistedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_audit_records_persisted_total",
		Help: "Denial results (one per violated rule) written into the nsprov-admission-denials ClusterReport.",
	})
	queueLength = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_audit_queue_length",
		Help: "Denial results waiting to be written into the ClusterReport, including a batch being written.",
	})
	reportWritesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_report_writes_total",
		Help: "Writes of nsprov's ClusterReports by report and result: success, conflict (another replica wrote first; retried on the newer object) or error.",
	}, []string{"report", "result"})
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_events_total",
		Help: "NamespaceRequestDenied Events by result: emitted (handed to the Event recorder) or dropped (the Event queue was full).",
	}, []string{"result"})
	namespaceAuditViolations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_namespace_audit_violations",
		Help: "Violations (namespace and rule) that the last background audit found among existing namespaces.",
	})
	namespaceAuditRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_namespace_audit_runs_total",
		Help: "Background audits of existing namespaces, by result (success or error).",
	}, []string{"result"})
	namespaceAuditLastRun = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_namespace_audit_last_run_timestamp_seconds",
		Help: "Unix time of the last background audit that completed.",
	})
)

// activePolicies is the store whose revision nsprov_policy_info reports;
// lastRevision is the revision of the last decision, used without a store.
var (
	activePolicies atomic.Pointer[policy.Store]
	lastRevision   atomic.Pointer[string]
)

// ObservePolicies makes nsprov_policy_info report the active revision of
// store, read at every scrape, so a reload shows at once, with or without
// traffic. The last store passed wins (a process serves one store).
func ObservePolicies(store *policy.Store) { activePolicies.Store(store) }

// policyInfo is nsprov_policy_info{revision,source,evaluator}: 1 for the
// active bundle. Without a store, only the revision of the last decision is
// known.
type policyInfo struct{ desc *prometheus.Desc }

func (p policyInfo) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p policyInfo) Collect(ch chan<- prometheus.Metric) {
	rev, source, evaluator := "", "", ""
	if s := activePolicies.Load(); s != nil {
		if b := s.Bundle(); b != nil {
			rev, source, evaluator = b.Revision, b.Source, policy.EvaluatorTopdown
			if b.Compiled() {
				evaluator = policy.EvaluatorCompiled
			}
		}
	} else if r := lastRevision.Load(); r != nil {
		rev = *r
	}
	if rev != "" {
		ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, 1, rev, source, evaluator)
	}
}

func init() {
	metrics.Registry.MustRegister(
		requestsTotal, violationsTotal, durationSeconds, droppedTotal, persistedTotal, queueLength,
		reportWritesTotal, eventsTotal, namespaceAuditViolations, namespaceAuditRuns, namespaceAuditLastRun,
		policyInfo{desc: prometheus.NewDesc("nsprov_policy_info",
			"The active policy bundle, a gauge set to 1: its revision (a hash of every file of the bundle), its source (embedded or the directory) and its evaluator (compiled, or topdown when chosen or when the bundle could not be compiled; the log says why).",
			[]string{"revision", "source", "evaluator"}, nil)},
	)
}
