package server

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"

	"github.com/nsprov/nsprov/internal/policy"
)

// ReasonPolicyReloadFailed is the reason of the Warning Event a rejected
// policy edit raises on nsprov's pod.
const ReasonPolicyReloadFailed = "PolicyReloadFailed"

// The reload counters; New registers them with the manager's registry.
var (
	policyReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_policy_reloads_total",
		Help: "Policy bundles from --policy-dir that replaced the active one after a change.",
	})
	policyReloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_policy_reload_errors_total",
		Help: "Bundles of --policy-dir that were rejected because they did not load (a change, or the bundle found at start); the previous or the last good bundle kept serving.",
	})
	policyLastGood = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_policy_last_good_serving",
		Help: "1 while this replica serves the last good bundle saved in the cluster because --policy-dir did not load when it started; 0 once --policy-dir loads.",
	})
)

// registerReloadMetrics registers the reload counters with reg; registering
// again (a second server in one process) is harmless.
func registerReloadMetrics(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{policyReloads, policyReloadErrors, policyLastGood} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return fmt.Errorf("registering the policy reload metrics: %w", err)
			}
		}
	}
	return nil
}

// reloadReporter counts the store's reloads and rejected edits of its
// directory (a store that starts on the last good bundle starts with one
// rejection: the directory's bundle at start), sets the last good gauge, and
// reports a rejected bundle as a Warning Event on the pod named
// by $POD_NAMESPACE, $POD_NAME and $POD_UID (set by the chart from the
// downward API; outside a pod only the log and the metric say it). It runs on
// every replica, each of which watches its own directory.
type reloadReporter struct {
	store  *policy.Store
	dir    string
	events events.EventRecorder
	log    logr.Logger
	pod    *corev1.Pod
	seen   policy.Status // what was reported so far
}

func newReloadReporter(store *policy.Store, dir string, rec events.EventRecorder, log logr.Logger) *reloadReporter {
	// Nothing is reported yet: a rejection at start (the store serves the
	// last good bundle) is reported like a later one.
	r := &reloadReporter{store: store, dir: dir, events: rec, log: log}
	if name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"); name != "" && ns != "" {
		r.pod = &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(os.Getenv("POD_UID"))},
		}
	}
	return r
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable:
// every replica reports its own reloads.
func (*reloadReporter) NeedLeaderElection() bool { return false }

// Start reports until ctx ends. It implements controller-runtime's Runnable.
func (r *reloadReporter) Start(ctx context.Context) error {
	for {
		changed := r.store.Changed()
		r.report(r.store.Status())
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
	}
}

// report counts what changed since the last report.
func (r *reloadReporter) report(st policy.Status) {
	defer func() { r.seen = st }()
	if st.LastGood {
		policyLastGood.Set(1)
	} else {
		policyLastGood.Set(0)
	}
	policyReloads.Add(float64(st.Reloads - r.seen.Reloads))
	if st.Rejections == r.seen.Rejections {
		return
	}
	policyReloadErrors.Add(float64(st.Rejections - r.seen.Rejections))
	if r.pod == nil {
		r.log.Info("no POD_NAME and POD_NAMESPACE: the rejected policy edit is reported in the log and metric only")
		return
	}
	if st.LastGood {
		r.events.Eventf(r.pod, nil, corev1.EventTypeWarning, ReasonPolicyReloadFailed, "PolicyReload",
			"%s", truncateNote(fmt.Sprintf("the policy in %s does not load, so this replica started on the %s; fix the policy: %s", r.dir, st.Bundle.Source, st.LastRejection)))
		return
	}
	r.events.Eventf(r.pod, nil, corev1.EventTypeWarning, ReasonPolicyReloadFailed, "PolicyReload",
		"the changed policy in %s was rejected and the previous bundle keeps serving: %s", r.dir, truncateNote(st.LastRejection.Error()))
}

// truncateNote keeps an Event's note under the API's 1 KiB limit.
func truncateNote(s string) string {
	const max = 900
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
