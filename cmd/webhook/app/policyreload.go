package app

import (
	"os"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/policy"
)

// ReasonPolicyReloadFailed is the reason of the Warning Event a rejected
// policy edit raises on nsprov's pod.
const ReasonPolicyReloadFailed = "PolicyReloadFailed"

var (
	policyReloads = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_policy_reloads_total",
		Help: "Policy bundles from --policy-dir that replaced the active one after a change.",
	})
	policyReloadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_policy_reload_errors_total",
		Help: "Changes of --policy-dir that were rejected because the bundle did not load; the previous bundle kept serving.",
	})
)

// The counters are served on the manager's metrics endpoint.
func init() { metrics.Registry.MustRegister(policyReloads, policyReloadErrors) }

// reportPolicyReloads counts reloads and rejected edits of the store's
// directory dir, and reports a rejected edit as a Warning Event on the pod named
// by $POD_NAMESPACE, $POD_NAME and $POD_UID (set by the chart from the
// downward API; outside a pod only the log and the metric say it). It chains
// the store's existing callbacks.
func reportPolicyReloads(store *policy.Store, dir string, rec events.EventRecorder, log logr.Logger) {
	var pod *corev1.Pod
	if name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"); name != "" && ns != "" {
		pod = &corev1.Pod{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(os.Getenv("POD_UID"))},
		}
	}
	prevChange, prevError := store.OnChange, store.OnError
	first := true
	store.OnChange = func(b *policy.Bundle) {
		if prevChange != nil {
			prevChange(b)
		}
		// Watch reports the bundle it starts with too; that is no reload.
		if first {
			first = false
			return
		}
		policyReloads.Inc()
	}
	store.OnError = func(err error) {
		if prevError != nil {
			prevError(err)
		}
		policyReloadErrors.Inc()
		if pod == nil {
			log.Info("no POD_NAME and POD_NAMESPACE: the rejected policy edit is reported in the log and metric only")
			return
		}
		rec.Eventf(pod, nil, corev1.EventTypeWarning, ReasonPolicyReloadFailed, "PolicyReload",
			"the changed policy in %s was rejected and the previous bundle keeps serving: %s", dir, truncateNote(err.Error()))
	}
}

// truncateNote keeps an Event's note under the API's 1 KiB limit.
func truncateNote(s string) string {
	const max = 900
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
