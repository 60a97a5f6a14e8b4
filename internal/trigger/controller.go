package trigger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"golang.org/x/time/rate"
	"k8s.io/utils/ptr"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
)

// Reconciler provisions requested Namespaces with Argo Workflows and reports
// progress on them.
type Reconciler struct {
	// Client reads and writes Namespaces and Workflows.
	Client client.Client
	// Policies gives the plan of a namespace.
	Policies *policy.Store
	// Events records Events on the Namespace.
	Events events.EventRecorder
	// Options say where Workflows go.
	Options Options
	// Username is the identity the plan is evaluated as: nsprov's own
	// (default contract.DefaultUsername), with the groups contract.As gives
	// it, as the background audit does.
	Username string
	// KeepWorkflows is how many Workflows per namespace are kept (default 5).
	KeepWorkflows int
	// TemplateRetry is how long to wait before looking for a missing
	// WorkflowTemplate again (default 30s).
	TemplateRetry time.Duration
	// MaxConcurrentReconciles is how many namespaces are reconciled at once (default 4).
	MaxConcurrentReconciles int
	// RetryBase is the wait before the first retry of a failed run; each
	// further retry waits twice as long, at most RetryMax (defaults 30s and
	// 1h).
	RetryBase, RetryMax time.Duration
	// Pacer bounds the rate of new Workflows and how many run at once
	// (default: no bound).
	Pacer *Pacer
	// APIReader reads from the API server, past the cache (default: the
	// manager's).
	APIReader client.Reader

	created createdRecently
	// written maps a namespace to the resourceVersion this replica last
	// wrote over, until the cache shows a later one.
	written sync.Map
}

// stale tells whether the cached ns is a version this replica has already
// written over.
func (r *Reconciler) stale(ns *corev1.Namespace) bool {
	v, ok := r.written.Load(ns.Name)
	if !ok {
		return false
	}
	if v == ns.ResourceVersion {
		return true
	}
	r.written.CompareAndDelete(ns.Name, v)
	return false
}

// createdGrace is how long a Workflow this replica created is taken to
// exist while the cache has not seen it yet.
const createdGrace = time.Minute

// createdRecently remembers the Workflows a replica created in the last
// createdGrace that its cache has not shown yet.
type createdRecently struct {
	mu sync.Mutex
	at map[string]time.Time
}

// add records that Workflow name was created at now, and forgets the ones
// created longer than createdGrace ago.
func (c *createdRecently) add(name string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.at == nil {
		c.at = map[string]time.Time{}
	}
	for n, at := range c.at {
		if now.Sub(at) > createdGrace {
			delete(c.at, n)
		}
	}
	c.at[name] = now
}

// wait is how much of its grace a recently created Workflow name has left
// (0: none, or not created recently).
func (c *createdRecently) wait(name string, now time.Time) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	at, ok := c.at[name]
	if !ok {
		return 0
	}
	return max(at.Add(createdGrace).Sub(now), 0)
}

// seen forgets name: the cache has it.
func (c *createdRecently) seen(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.at, name)
}

// SetupWithManager registers the controller: it watches requested Namespaces
// and the Workflows they own.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.KeepWorkflows == 0 {
		r.KeepWorkflows = 5
	}
	if r.TemplateRetry == 0 {
		r.TemplateRetry = 30 * time.Second
	}
	if r.Options.TemplateName == "" {
		r.Options.TemplateName = TemplateName
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 4
	}
	if r.Username == "" {
		r.Username = contract.DefaultUsername
	}
	if r.RetryBase == 0 {
		r.RetryBase = 30 * time.Second
	}
	if r.RetryMax == 0 {
		r.RetryMax = time.Hour
	}
	if r.Pacer == nil {
		r.Pacer = &Pacer{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	// Policy changes: a runnable of the leader, like the controller. Every
	// requested namespace is reconciled; those whose plan changed get a new
	// Workflow.
	changes := make(chan event.GenericEvent)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return r.watchPolicy(ctx, changes) })); err != nil {
		return err
	}
	if err := registerMetrics(r.Client, r.Options.ArgoNamespace, r.Pacer); err != nil {
		return err
	}
	// The Pacer counts the unfinished Workflows on every decision and every
	// Workflow event: through this index the cache hands over those alone,
	// not every Workflow nsprov ever created (10,000 after a sweep).
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &wfv1.Workflow{}, unfinishedIndex, unfinished); err != nil {
		return fmt.Errorf("indexing the unfinished Workflows: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nsprov-trigger").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			ns, ok := o.(*corev1.Namespace)
			return ok && contract.IsRequested(ns)
		}))).
		Owns(&wfv1.Workflow{}).
		// A Workflow that finishes frees a slot: the queued namespaces
		// whose turn has come start now (pacing.go).
		Watches(&wfv1.Workflow{}, handler.EnqueueRequestsFromMapFunc(r.wakeQueued)).
		// A WorkflowTemplate that appears unblocks the namespaces waiting
		// for it; one whose content changed re-provisions every namespace
		// (the others find their run key unchanged).
		Watches(&wfv1.WorkflowTemplate{}, handler.EnqueueRequestsFromMapFunc(r.templateChanged)).
		// A new policy may change any namespace's plan.
		WatchesRawSource(source.Channel(changes, handler.EnqueueRequestsFromMapFunc(r.allRequested))).
		Complete(r)
}

// watchPolicy sends an event on changes whenever the store swaps in a new
// policy, until ctx ends.
func (r *Reconciler) watchPolicy(ctx context.Context, changes chan<- event.GenericEvent) error {
	changed := r.Policies.Changed()
	seen := r.Policies.Bundle()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		// Taken before the namespaces are reconciled, which read the
		// newest bundle: a later change wakes the next round.
		changed = r.Policies.Changed()
		b := r.Policies.Bundle()
		if b == seen {
			continue // a rejected policy edit: no plan changed
		}
		seen = b
		log.FromContext(ctx).Info("the policy changed; reconciling every requested namespace against it", "revision", r.Policies.Bundle().Revision)
		select {
		case changes <- event.GenericEvent{Object: &corev1.Namespace{}}:
		case <-ctx.Done():
			return nil
		}
	}
}

// allRequested lists every requested namespace, the failed ones first, so
// that a change re-provisions them before the others.
func (r *Reconciler) allRequested(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list, client.UnsafeDisableDeepCopy); err != nil {
		log.FromContext(ctx).Error(err, "listing the requested namespaces")
		return nil
	}
	var failed, others []reconcile.Request
	for i := range list.Items {
		ns := &list.Items[i]
		if !contract.IsRequested(ns) {
			continue
		}
		req := reconcile.Request{NamespacedName: types.NamespacedName{Name: ns.Name}}
		if c := provisionedCondition(ns); c != nil && c.Status == corev1.ConditionFalse {
			failed = append(failed, req)
		} else {
			others = append(others, req)
		}
	}
	return append(failed, others...)
}

// templateChanged lists every requested namespace when o is nsprov's
// WorkflowTemplate.
func (r *Reconciler) templateChanged(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() != r.Options.ArgoNamespace || o.GetName() != r.Options.TemplateName {
		return nil
	}
	return r.allRequested(ctx, o)
}

// Reconcile implements reconcile.Reconciler.
//
// A namespace is provisioned when its run key (the plan's hash, the
// WorkflowTemplate's content hash, nsprov.io/reprovision) differs from the
// one it records in nsprov.io/provisioned-plan, and when the run of its
// recorded key failed and its backoff has passed. Nothing else starts a
// Workflow: a Workflow that vanishes (Argo's TTL) is history.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, ns); err != nil {
		r.Pacer.Forget(req.Name)
		r.written.Delete(req.Name)
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.stale(ns) {
		// The cache still has the version this replica wrote over: the
		// event of the write reconciles the namespace again. Acting on it
		// would only meet a conflict (a Workflow's event often comes
		// before its Namespace's).
		return ctrl.Result{}, nil
	}
	if ns.DeletionTimestamp != nil {
		r.Pacer.Forget(ns.Name)
		return ctrl.Result{}, r.stopAll(ctx, ns)
	}
	if !contract.IsRequested(ns) {
		r.Pacer.Forget(ns.Name)
		return ctrl.Result{}, nil
	}
	res, queued, err := r.reconcile(ctx, ns)
	if !queued {
		r.Pacer.Forget(ns.Name)
	}
	if apierrors.IsConflict(err) {
		// The cache held an older version of the namespace: the event of
		// the newer one reconciles it again. As an error it would wait in
		// the workqueue's rate limiter, 10 a second for all namespaces.
		return ctrl.Result{}, nil
	}
	return res, err
}

// reconcile does the work of Reconcile for a requested namespace; queued
// tells that the namespace waits in the Pacer's queue.
func (r *Reconciler) reconcile(ctx context.Context, ns *corev1.Namespace) (ctrl.Result, bool, error) {
	logger := log.FromContext(ctx)
	b := r.Policies.Bundle()
	as := contract.As(r.Username)
	in := &policy.Request{Operation: "UPDATE", Username: as.Username, Groups: as.Groups, Object: ns, OldObject: ns}
	raw, err := b.Plan(ctx, in)
	if err != nil {
		return ctrl.Result{}, false, fmt.Errorf("evaluating the plan of %s: %w", ns.Name, err)
	}
	if raw == nil {
		v, err := b.Validate(ctx, in)
		if err != nil {
			return ctrl.Result{}, false, fmt.Errorf("evaluating the policy for %s: %w", ns.Name, err)
		}
		msg := "the policy defines no provisioning plan for this namespace"
		if !v.Allowed() {
			msg = "the namespace breaks the current policy: " + v.Message()
		}
		return ctrl.Result{}, false, r.report(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonPolicyViolation, msg, ptr.To(contract.ProvisioningFailed))
	}
	plan, err := DecodePlan(raw)
	if err != nil {
		return ctrl.Result{}, false, r.report(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonPolicyViolation, err.Error(), ptr.To(contract.ProvisioningFailed))
	}
	planHash := Hash(Parameters(plan))
	recorded := ns.Annotations[contract.ProvisionedPlanAnnotation]
	cur := provisionedCondition(ns)

	tmpl := &wfv1.WorkflowTemplate{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Options.ArgoNamespace, Name: r.Options.TemplateName}, tmpl); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, false, fmt.Errorf("reading WorkflowTemplate %s/%s: %w", r.Options.ArgoNamespace, r.Options.TemplateName, err)
		}
		// Without the template there is no run key; a namespace provisioned
		// with its current plan keeps its condition.
		if PlanHashOf(recorded) == planHash && cur != nil && cur.Reason != contract.ReasonTemplateNotFound {
			return ctrl.Result{}, false, nil
		}
		msg := fmt.Sprintf("WorkflowTemplate %s/%s is not installed; install the nsprov chart, which creates it", r.Options.ArgoNamespace, r.Options.TemplateName)
		logger.Info("cannot provision yet", "namespace", ns.Name, "reason", msg)
		if err := r.report(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonTemplateNotFound, msg, nil); err != nil {
			return ctrl.Result{}, false, err
		}
		return ctrl.Result{RequeueAfter: r.TemplateRetry}, false, nil
	}
	key := RunKey(planHash, TemplateHash(&tmpl.Spec), ns.Annotations[contract.ReprovisionAnnotation])
	_, cancel := ns.Annotations[contract.CancelAnnotation]

	if recorded != key {
		// A new request, plan, template or reprovision: a new run.
		if cancel {
			return ctrl.Result{}, false, r.cancel(ctx, ns, nil, key)
		}
		return r.start(ctx, ns, plan, key, 1, false)
	}

	// The run of the recorded key: its Workflow, if still there.
	ref := ns.Annotations[contract.WorkflowAnnotation]
	name := strings.TrimPrefix(ref, r.Options.ArgoNamespace+"/")
	attempt := AttemptOf(name)
	var wf *wfv1.Workflow
	if name != "" {
		wf = &wfv1.Workflow{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Options.ArgoNamespace, Name: name}, wf); apierrors.IsNotFound(err) {
			wf = nil
		} else if err != nil {
			return ctrl.Result{}, false, fmt.Errorf("reading Workflow %s: %w", ref, err)
		} else {
			r.created.seen(name)
		}
	}
	if cur != nil && cur.Reason == contract.ReasonCancelled {
		// Cancelled stays cancelled until a new request.
		return ctrl.Result{}, false, r.annotate(ctx, ns, map[string]*string{
			contract.CancelAnnotation:       nil,
			contract.ProvisioningAnnotation: ptr.To(contract.ProvisioningCancelled),
		})
	}
	if cancel {
		if wf != nil && wf.Status.Fulfilled() && cur != nil && cur.Status == corev1.ConditionTrue {
			return ctrl.Result{}, false, r.dropCancel(ctx, ns) // nothing left to cancel
		}
		return ctrl.Result{}, false, r.cancel(ctx, ns, wf, key)
	}
	if wf == nil {
		switch {
		case cur != nil && cur.Status == corev1.ConditionTrue:
			return ctrl.Result{}, false, r.syncProvisioning(ctx, ns, contract.ProvisioningSucceeded) // history
		case cur != nil && cur.Reason == contract.ReasonFailed:
			return r.retry(ctx, ns, plan, key, attempt, cur.LastTransitionTime.Time)
		}
		if name == "" {
			return r.start(ctx, ns, plan, key, 1, false)
		}
		// Not in the cache: just created (the cache lags behind the
		// annotation that names it), or deleted before it finished. One
		// this replica just created is in the cache soon, and its event
		// reconciles the namespace again: no need to ask the API server,
		// unless that takes longer than the grace.
		if wait := r.created.wait(name, time.Now()); wait > 0 {
			return ctrl.Result{RequeueAfter: wait}, false, nil
		}
		wf = &wfv1.Workflow{}
		if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Options.ArgoNamespace, Name: name}, wf); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, false, fmt.Errorf("reading Workflow %s: %w", ref, err)
		} else if err != nil {
			// Gone, or queued for a retry: the next attempt.
			return r.start(ctx, ns, plan, key, attempt+1, true)
		}
	}

	status, reason, msg := conditionFor(wf)
	switch reason {
	case contract.ReasonFailed:
		if cur != nil && cur.Reason == contract.ReasonQueued {
			return r.start(ctx, ns, plan, key, attempt+1, true) // its backoff had passed
		}
		failedAt := time.Now().Truncate(time.Second)
		if cur != nil && cur.Reason == contract.ReasonFailed && strings.Contains(cur.Message, "/"+wf.Name+" ") {
			failedAt = cur.LastTransitionTime.Time
		}
		next := failedAt.Add(r.backoff(attempt))
		msg = fmt.Sprintf("%s (attempt %d; next retry at %s)", msg, attempt, next.UTC().Format(time.RFC3339))
		if err := r.write(ctx, ns, wf, &condition{status, reason, msg, failedAt}, map[string]*string{
			contract.ProvisioningAnnotation: ptr.To(contract.ProvisioningFailed),
		}); err != nil {
			return ctrl.Result{}, false, err
		}
		return r.retry(ctx, ns, plan, key, attempt, failedAt)
	case contract.ReasonSucceeded:
		if attempt > 1 {
			msg = fmt.Sprintf("%s (attempt %d)", msg, attempt)
		}
		if err := r.report(ctx, ns, wf, status, reason, msg, ptr.To(contract.ProvisioningSucceeded)); err != nil {
			return ctrl.Result{}, false, err
		}
	default:
		if attempt > 1 {
			msg = fmt.Sprintf("%s (attempt %d)", msg, attempt)
		}
		if err := r.report(ctx, ns, wf, status, reason, msg, ptr.To(contract.ProvisioningPending)); err != nil {
			return ctrl.Result{}, false, err
		}
	}
	return ctrl.Result{}, false, r.prune(ctx, ns, wf.Name)
}

// backoff is the wait after the attempt-th failed attempt: RetryBase doubled
// per attempt, at most RetryMax.
func (r *Reconciler) backoff(attempt int) time.Duration {
	return Backoff(attempt, r.RetryBase, r.RetryMax)
}

// Backoff is base * 2^(attempt-1), at most max.
func Backoff(attempt int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < attempt && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d
}

// retry starts the next attempt of a failed run once its backoff has passed.
func (r *Reconciler) retry(ctx context.Context, ns *corev1.Namespace, plan *contract.Plan, key string, attempt int, failedAt time.Time) (ctrl.Result, bool, error) {
	if wait := time.Until(failedAt.Add(r.backoff(attempt))); wait > 0 {
		return ctrl.Result{RequeueAfter: wait}, false, nil
	}
	return r.start(ctx, ns, plan, key, attempt+1, true)
}

// start creates the Workflow of attempt attempt of the run key, when the
// Pacer gives it a turn; until then the namespace is Queued.
func (r *Reconciler) start(ctx context.Context, ns *corev1.Namespace, plan *contract.Plan, key string, attempt int, retry bool) (ctrl.Result, bool, error) {
	wf := NewWorkflow(ns, plan, key, attempt, r.Options)
	created := false
	create := func() (string, error) {
		// Already in the cache: created by an earlier reconcile (whose
		// write the namespace's cached copy does not show yet) or another
		// replica; no need to ask the API server to refuse it.
		if err := r.Client.Get(ctx, client.ObjectKeyFromObject(wf), &wfv1.Workflow{}); err == nil {
			return "", nil
		}
		if err := r.Client.Create(ctx, wf); err != nil {
			if apierrors.IsAlreadyExists(err) {
				return "", nil
			}
			return "", fmt.Errorf("creating Workflow %s/%s: %w", wf.Namespace, wf.Name, err)
		}
		created = true
		r.created.add(wf.Name, time.Now())
		return wf.Name, nil
	}
	var wait time.Duration
	if r.Pacer.MaxRunning == 0 && r.Pacer.Limiter == nil {
		// No bound to keep: the workers create at once, as many as run,
		// without listing the running Workflows or queueing one behind
		// another in the Pacer.
		if _, err := create(); err != nil {
			return ctrl.Result{}, false, err
		}
	} else {
		// The Pacer lists the running Workflows (only with a bound) while it
		// decides, so that two workers cannot both take the last slot.
		running := func() ([]string, error) { return r.running(ctx) }
		var err error
		if wait, err = r.Pacer.Start(ns.Name, retry, running, create); err != nil {
			return ctrl.Result{}, false, err
		}
	}
	if wait > 0 {
		msg := fmt.Sprintf("waiting for its turn: nsprov runs at most %d Workflows at once and starts at most %s a second", r.Pacer.MaxRunning, limitString(r.Pacer))
		if retry {
			msg = fmt.Sprintf("retry %d %s", attempt, msg)
		}
		return ctrl.Result{RequeueAfter: wait}, true, r.report(ctx, ns, nil, corev1.ConditionUnknown, contract.ReasonQueued, msg, ptr.To(contract.ProvisioningPending))
	}
	if created {
		log.FromContext(ctx).Info("provisioning started", "namespace", ns.Name, "workflow", wf.Name, "attempt", attempt)
		if retry {
			r.Events.Eventf(ns, wf, corev1.EventTypeNormal, "ProvisioningRetried", "Provision",
				"attempt %d: started Workflow %s/%s", attempt, wf.Namespace, wf.Name)
		} else {
			r.Events.Eventf(ns, wf, corev1.EventTypeNormal, "ProvisioningStarted", "Provision",
				"started Workflow %s/%s", wf.Namespace, wf.Name)
		}
	}
	// The condition and the annotations in one write: no reader sees the
	// new Workflow's name beside the previous Workflow's success, and the
	// namespace costs one write on the way to its Workflow.
	_, reason, msg := conditionFor(wf)
	if attempt > 1 {
		msg = fmt.Sprintf("%s (attempt %d)", msg, attempt)
	}
	if err := r.write(ctx, ns, wf, &condition{corev1.ConditionUnknown, reason, msg, time.Now()}, map[string]*string{
		contract.WorkflowAnnotation:        ptr.To(wf.Namespace + "/" + wf.Name),
		contract.ProvisionedPlanAnnotation: ptr.To(key),
		contract.ProvisioningAnnotation:    ptr.To(contract.ProvisioningPending),
	}); err != nil {
		return ctrl.Result{}, false, err
	}
	return ctrl.Result{}, false, r.prune(ctx, ns, wf.Name)
}

func limitString(p *Pacer) string {
	if p.Limiter == nil || p.Limiter.Limit() == rate.Inf {
		return "any number"
	}
	return strconv.FormatFloat(float64(p.Limiter.Limit()), 'g', -1, 64)
}

// running lists the cached nsprov Workflows that have not finished.
func (r *Reconciler) running(ctx context.Context) ([]string, error) {
	list := &wfv1.WorkflowList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Options.ArgoNamespace),
		client.MatchingLabels{contract.ManagedByLabel: contract.ManagedBy},
		client.MatchingFields{unfinishedIndex: "true"}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the running Workflows: %w", err)
	}
	names := make([]string, 0, len(list.Items))
	for i := range list.Items {
		if !list.Items[i].Status.Fulfilled() {
			names = append(names, list.Items[i].Name)
		}
	}
	return names, nil
}

// unfinishedIndex indexes the cached Workflows that have not finished
// (value "true"); the finished ones are not in it.
const unfinishedIndex = "nsprov.io/unfinished"

func unfinished(o client.Object) []string {
	if wf, ok := o.(*wfv1.Workflow); ok && !wf.Status.Fulfilled() {
		return []string{"true"}
	}
	return nil
}

// cancel stops the run of key (its Workflow wf, when there is one), records
// it as cancelled so that it is not run again, and removes the cancel
// annotation.
func (r *Reconciler) cancel(ctx context.Context, ns *corev1.Namespace, wf *wfv1.Workflow, key string) error {
	msg := "nsprov.io/cancel cancelled the provisioning before its Workflow started"
	if wf != nil {
		if err := r.shutdown(ctx, wf); err != nil {
			return err
		}
		msg = fmt.Sprintf("nsprov.io/cancel cancelled the provisioning: Workflow %s/%s was stopped", wf.Namespace, wf.Name)
	}
	return r.write(ctx, ns, wf, &condition{corev1.ConditionFalse, contract.ReasonCancelled, msg, time.Now()}, map[string]*string{
		contract.ProvisionedPlanAnnotation: ptr.To(key),
		contract.ProvisioningAnnotation:    ptr.To(contract.ProvisioningCancelled),
		contract.CancelAnnotation:          nil,
	})
}

// dropCancel removes a cancel annotation that has nothing (left) to cancel.
func (r *Reconciler) dropCancel(ctx context.Context, ns *corev1.Namespace) error {
	if _, ok := ns.Annotations[contract.CancelAnnotation]; !ok {
		return nil
	}
	return r.annotate(ctx, ns, map[string]*string{contract.CancelAnnotation: nil})
}

// shutdown stops an unfinished Workflow as `argo terminate` does.
func (r *Reconciler) shutdown(ctx context.Context, wf *wfv1.Workflow) error {
	if wf.Status.Fulfilled() || wf.Spec.Shutdown != "" {
		return nil
	}
	patch := client.MergeFrom(wf.DeepCopy())
	wf.Spec.Shutdown = wfv1.ShutdownStrategyTerminate
	if err := r.Client.Patch(ctx, wf, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("stopping Workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}
	log.FromContext(ctx).Info("provisioning stopped", "workflow", wf.Name)
	return nil
}

// stopAll stops the unfinished Workflows of a namespace being deleted; the
// garbage collector deletes them with the namespace.
func (r *Reconciler) stopAll(ctx context.Context, ns *corev1.Namespace) error {
	list := &wfv1.WorkflowList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Options.ArgoNamespace), client.MatchingLabels{contract.NamespaceLabel: ns.Name}); err != nil {
		return fmt.Errorf("listing the workflows of %s: %w", ns.Name, err)
	}
	var errs []error
	for i := range list.Items {
		errs = append(errs, r.shutdown(ctx, &list.Items[i]))
	}
	return errors.Join(errs...)
}

// report sets the condition, and the provisioning annotation when
// provisioning is not nil, in one write.
func (r *Reconciler) report(ctx context.Context, ns *corev1.Namespace, wf *wfv1.Workflow, status corev1.ConditionStatus, reason, msg string, provisioning *string) error {
	var set map[string]*string
	if provisioning != nil {
		set = map[string]*string{contract.ProvisioningAnnotation: provisioning}
	}
	return r.write(ctx, ns, wf, &condition{status, reason, msg, time.Now()}, set)
}

// syncProvisioning sets the provisioning annotation to state.
func (r *Reconciler) syncProvisioning(ctx context.Context, ns *corev1.Namespace, state string) error {
	return r.annotate(ctx, ns, map[string]*string{contract.ProvisioningAnnotation: ptr.To(state)})
}

// annotate sets (nil: removes) annotations of ns that differ.
func (r *Reconciler) annotate(ctx context.Context, ns *corev1.Namespace, set map[string]*string) error {
	return r.write(ctx, ns, nil, nil, set)
}

// condition is a Provisioned condition to report, and when a transition
// into it happened.
type condition struct {
	status      corev1.ConditionStatus
	reason, msg string
	at          time.Time
}

// write reports on ns in one request, and only when something changed: the
// Provisioned condition (when c is not nil) and the annotations of set
// (nil: removed). Both go through the namespaces/status subresource, whose
// strategy resets only the spec, so metadata and status change together
// (the chart's ValidatingAdmissionPolicy keeps nsprov.io/ metadata and the
// condition there to nsprov). The patch carries the resourceVersion read:
// it is refused over a newer version of the namespace, since a change of
// the request in between must not be reported as provisioned. A strategic
// merge patch touches only the Provisioned condition and the annotations
// named, so the Namespace it is computed from may be partial. A transition
// of the condition into Succeeded, Failed or a problem is an Event.
func (r *Reconciler) write(ctx context.Context, ns *corev1.Namespace, wf *wfv1.Workflow, c *condition, set map[string]*string) error {
	old := ns.DeepCopy()
	transition, condChanged := false, false
	if c != nil {
		condChanged, transition = setCondition(ns, *c)
	}
	if !setAnnotations(ns, set) && !condChanged {
		return nil
	}
	patch := client.StrategicMergeFrom(old, client.MergeFromWithOptimisticLock{})
	if err := r.Client.Status().Patch(ctx, ns, patch); err != nil {
		if c != nil {
			return fmt.Errorf("setting condition %s=%s on %s: %w", contract.ConditionProvisioned, c.status, ns.Name, err)
		}
		return fmt.Errorf("annotating %s: %w", ns.Name, err)
	}
	if old.ResourceVersion != "" && old.ResourceVersion != ns.ResourceVersion {
		r.written.Store(ns.Name, old.ResourceVersion)
	}
	if !transition {
		return nil
	}
	related := wfOrNil(wf)
	if wf != nil && (c.reason == contract.ReasonSucceeded || c.reason == contract.ReasonFailed) {
		observeRun(wf, c.reason)
	}
	switch c.reason {
	case contract.ReasonSucceeded:
		r.Events.Eventf(ns, related, corev1.EventTypeNormal, "ProvisioningSucceeded", "Provision", "%s", c.msg)
	case contract.ReasonFailed, contract.ReasonTemplateNotFound, contract.ReasonPolicyViolation:
		r.Events.Eventf(ns, related, corev1.EventTypeWarning, "Provisioning"+c.reason, "Provision", "%s", truncate(c.msg, 1000))
	case contract.ReasonCancelled:
		r.Events.Eventf(ns, related, corev1.EventTypeNormal, "ProvisioningCancelled", "Provision", "%s", c.msg)
	}
	return nil
}

// setAnnotations sets (nil: removes) the annotations of set on ns, and
// tells whether any changed.
func setAnnotations(ns *corev1.Namespace, set map[string]*string) bool {
	changed := false
	for k, v := range set {
		old, ok := ns.Annotations[k]
		switch {
		case v == nil && ok:
			delete(ns.Annotations, k)
			changed = true
		case v != nil && (!ok || old != *v):
			if ns.Annotations == nil {
				ns.Annotations = map[string]string{}
			}
			ns.Annotations[k] = *v
			changed = true
		}
	}
	return changed
}

// setCondition sets the Provisioned condition of ns to c, and tells whether
// it changed and whether that is a transition (a new status or reason). The
// transition time is kept while the status stays.
func setCondition(ns *corev1.Namespace, c condition) (changed, transition bool) {
	cur := provisionedCondition(ns)
	if cur != nil && cur.Status == c.status && cur.Reason == c.reason && cur.Message == c.msg {
		return false, false
	}
	transition = cur == nil || cur.Status != c.status || cur.Reason != c.reason
	next := corev1.NamespaceCondition{
		Type: contract.ConditionProvisioned, Status: c.status, Reason: c.reason, Message: c.msg,
		LastTransitionTime: metav1.NewTime(c.at.Truncate(time.Second)), // as the API server stores it
	}
	if cur != nil && cur.Status == c.status {
		next.LastTransitionTime = cur.LastTransitionTime
	}
	if cur == nil {
		ns.Status.Conditions = append(ns.Status.Conditions, next)
	} else {
		*cur = next
	}
	return true, transition
}

// provisionedCondition is the Provisioned condition of ns, or nil.
func provisionedCondition(ns *corev1.Namespace) *corev1.NamespaceCondition {
	for i := range ns.Status.Conditions {
		if ns.Status.Conditions[i].Type == contract.ConditionProvisioned {
			return &ns.Status.Conditions[i]
		}
	}
	return nil
}

// conditionFor maps a Workflow's phase to the Provisioned condition.
func conditionFor(wf *wfv1.Workflow) (corev1.ConditionStatus, string, string) {
	name := wf.Namespace + "/" + wf.Name
	switch wf.Status.Phase {
	case wfv1.WorkflowSucceeded:
		return corev1.ConditionTrue, contract.ReasonSucceeded, fmt.Sprintf("Workflow %s succeeded", name)
	case wfv1.WorkflowFailed, wfv1.WorkflowError:
		msg := wf.Status.Message
		if msg == "" {
			msg = failedSteps(wf)
		}
		msg = strings.TrimSpace(msg)
		if msg == "" {
			msg = "no message"
		}
		return corev1.ConditionFalse, contract.ReasonFailed, fmt.Sprintf("Workflow %s failed: %s", name, msg)
	case wfv1.WorkflowRunning:
		return corev1.ConditionUnknown, contract.ReasonRunning, fmt.Sprintf("Workflow %s is running (%s)", name, wf.Status.Progress)
	default:
		return corev1.ConditionUnknown, contract.ReasonPending, fmt.Sprintf("Workflow %s is pending", name)
	}
}

// failedSteps names the failed steps of a Workflow with the message of each
// one's last attempt: Argo leaves the Workflow's own message empty when a DAG
// task fails, and a retried step's node only says "No more retries left".
func failedSteps(wf *wfv1.Workflow) string {
	retried := map[string]bool{}
	var steps []string
	for _, n := range wf.Status.Nodes {
		if n.Type != wfv1.NodeTypeRetry || !n.FailedOrError() || len(n.Children) == 0 {
			continue
		}
		for _, c := range n.Children {
			retried[c] = true
		}
		msg := n.Message
		if last, ok := wf.Status.Nodes[n.Children[len(n.Children)-1]]; ok && last.Message != "" {
			msg = last.Message
		}
		steps = append(steps, n.DisplayName+": "+msg)
	}
	for id, n := range wf.Status.Nodes {
		if n.Type == wfv1.NodeTypePod && n.FailedOrError() && !retried[id] && n.Message != "" {
			steps = append(steps, n.DisplayName+": "+n.Message)
		}
	}
	sort.Strings(steps)
	return strings.Join(steps, "; ")
}

func wfOrNil(wf *wfv1.Workflow) client.Object {
	if wf == nil {
		return nil
	}
	return wf
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// prune deletes the oldest Workflows of a namespace beyond KeepWorkflows,
// never the current one.
func (r *Reconciler) prune(ctx context.Context, ns *corev1.Namespace, current string) error {
	list := &wfv1.WorkflowList{}
	if err := r.Client.List(ctx, list, client.InNamespace(r.Options.ArgoNamespace), client.MatchingLabels{contract.NamespaceLabel: ns.Name}); err != nil {
		return fmt.Errorf("listing the workflows of %s: %w", ns.Name, err)
	}
	if len(list.Items) <= r.KeepWorkflows {
		return nil
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool {
		ti, tj := items[i].CreationTimestamp, items[j].CreationTimestamp
		if ti.Equal(&tj) {
			return items[i].Name < items[j].Name
		}
		return ti.Before(&tj)
	})
	var errs []error
	for i := 0; i < len(items)-r.KeepWorkflows; i++ {
		if items[i].Name == current {
			continue
		}
		if err := r.Client.Delete(ctx, &items[i]); client.IgnoreNotFound(err) != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CacheOptions restricts what the controller caches to what it needs: the
// Workflows nsprov created (by label) and the WorkflowTemplates, in the Argo
// namespace only.
func CacheOptions(argoNamespace string) map[client.Object]cache.ByObject {
	ns := map[string]cache.Config{argoNamespace: {}}
	return map[client.Object]cache.ByObject{
		&wfv1.Workflow{}:         {Namespaces: ns, Label: labels.SelectorFromSet(labels.Set{contract.ManagedByLabel: contract.ManagedBy})},
		&wfv1.WorkflowTemplate{}: {Namespaces: ns},
	}
}

// ArgoInstalled reports whether the API server serves Argo's Workflow and
// WorkflowTemplate kinds.
func ArgoInstalled(d discovery.DiscoveryInterface) error {
	gv := wfv1.SchemeGroupVersion.String()
	res, err := d.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return fmt.Errorf("the API server does not serve %s (%s): install Argo Workflows and its CRDs", gv, strings.TrimSpace(err.Error()))
	}
	for _, kind := range []string{"Workflow", "WorkflowTemplate"} {
		found := false
		for _, r := range res.APIResources {
			found = found || r.Kind == kind
		}
		if !found {
			return fmt.Errorf("the API server does not serve %s %s: install Argo Workflows and its CRDs", gv, kind)
		}
	}
	return nil
}
