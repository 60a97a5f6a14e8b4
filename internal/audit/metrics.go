package audit

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/policy"
)

// The metrics are declared beside what they measure (sink.go, queue.go,
// writer.go, report.go, auditor.go) and registered here, once, with
// controller-runtime's registry (served on the manager's metrics endpoint)
// when the first Sink, Writer or Auditor is created or ObservePolicies is
// called.
var registerOnce sync.Once

func registerMetrics() {
	registerOnce.Do(func() {
		metrics.Registry.MustRegister(
			requestsTotal, violationsTotal, durationSeconds, droppedTotal, persistedTotal, queueLength,
			reportWritesTotal, eventsTotal, namespaceAuditViolations, namespaceAuditRuns, namespaceAuditLastRun,
			policyInfo{desc: prometheus.NewDesc("nsprov_policy_info",
				"The active policy bundle, a gauge set to 1: its revision (a hash of every file of the bundle), its source (embedded or the directory) and its evaluator (compiled, or topdown when chosen or when the bundle could not be compiled; the log says why).",
				[]string{"revision", "source", "evaluator"}, nil)},
			decisionCacheMetrics{
				bytes: prometheus.NewDesc("nsprov_policy_decision_cache_bytes",
					"Estimated bytes held by the active bundle's decision caches (bounded by --policy-decision-cache-bytes); compare with go_memstats_heap_alloc_bytes for its share of the heap.", nil, nil),
				entries: prometheus.NewDesc("nsprov_policy_decision_cache_entries",
					"Decisions held by the active bundle's decision caches.", nil, nil),
				lookups: prometheus.NewDesc("nsprov_policy_decision_cache_lookups_total",
					"Decision cache lookups of the active bundle by result: hit, miss, or skipped (the input or the decision was too large to cache). A policy reload starts new caches, and the counts again from 0.",
					[]string{"result"}, nil),
			},
		)
	})
}

// activePolicies is the store whose revision nsprov_policy_info reports;
// lastRevision is the revision of the last decision, used without a store.
var (
	activePolicies atomic.Pointer[policy.Store]
	lastRevision   atomic.Pointer[string]
)

// ObservePolicies makes nsprov_policy_info report the active revision of
// store, read at every scrape, so a reload shows at once, with or without
// traffic. The last store passed wins (a process serves one store).
func ObservePolicies(store *policy.Store) {
	registerMetrics()
	activePolicies.Store(store)
}

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

// decisionCacheMetrics reports the decision caches of the active bundle of
// the observed store, read at every scrape.
type decisionCacheMetrics struct{ bytes, entries, lookups *prometheus.Desc }

func (d decisionCacheMetrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- d.bytes
	ch <- d.entries
	ch <- d.lookups
}

func (d decisionCacheMetrics) Collect(ch chan<- prometheus.Metric) {
	s := activePolicies.Load()
	if s == nil || s.Bundle() == nil {
		return
	}
	st := s.Bundle().CacheStats()
	ch <- prometheus.MustNewConstMetric(d.bytes, prometheus.GaugeValue, float64(st.Bytes))
	ch <- prometheus.MustNewConstMetric(d.entries, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(d.lookups, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(d.lookups, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(d.lookups, prometheus.CounterValue, float64(st.Skipped), "skipped")
}
