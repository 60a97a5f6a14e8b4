package trigger

import (
	"context"
	"errors"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/contract"
)

var (
	runsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_provisioning_runs_total",
		Help: "Provisioning Workflows that finished, by result (succeeded or failed).",
	}, []string{"result"})
	runDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "nsprov_provisioning_duration_seconds",
		Help:    "Time from a provisioning Workflow's start to its end, by result.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
	}, []string{"result"})
)

// activeWorkflows counts, at scrape time, the cached nsprov Workflows that
// have not finished.
type activeWorkflows struct {
	client    client.Reader
	namespace string
	desc      *prometheus.Desc
}

func (a *activeWorkflows) Describe(ch chan<- *prometheus.Desc) { ch <- a.desc }

func (a *activeWorkflows) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &wfv1.WorkflowList{}
	if err := a.client.List(ctx, list, client.InNamespace(a.namespace), client.MatchingLabels{contract.ManagedByLabel: contract.ManagedBy}); err != nil {
		ch <- prometheus.NewInvalidMetric(a.desc, err)
		return
	}
	n := 0
	for _, wf := range list.Items {
		if !wf.Status.Fulfilled() {
			n++
		}
	}
	ch <- prometheus.MustNewConstMetric(a.desc, prometheus.GaugeValue, float64(n))
}

// registerMetrics registers the controller's metrics with controller-runtime's
// registry (served on the metrics endpoint); registering twice is harmless.
func registerMetrics(c client.Reader, argoNamespace string, pacer *Pacer) error {
	active := &activeWorkflows{client: c, namespace: argoNamespace, desc: prometheus.NewDesc(
		"nsprov_provisioning_workflows_active", "nsprov Workflows that have not finished.", nil, nil)}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "nsprov_provisioning_queued",
		Help: "Requested namespaces waiting for their turn to start a Workflow (condition reason Queued).",
	}, func() float64 { return float64(pacer.Queued()) })
	for _, col := range []prometheus.Collector{runsTotal, runDuration, active, queued} {
		if err := metrics.Registry.Register(col); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}

// observeRun records a finished Workflow once, when the condition changes to
// its result.
func observeRun(wf *wfv1.Workflow, reason string) {
	result := "failed"
	if reason == contract.ReasonSucceeded {
		result = "succeeded"
	}
	runsTotal.WithLabelValues(result).Inc()
	if !wf.Status.StartedAt.IsZero() && !wf.Status.FinishedAt.IsZero() {
		runDuration.WithLabelValues(result).Observe(wf.Status.FinishedAt.Sub(wf.Status.StartedAt.Time).Seconds())
	}
}
