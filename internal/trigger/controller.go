package trigger

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
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
	// Policy changes: a runnable of the leader, like the controller. Every
	// requested namespace is reconciled; those whose plan changed get a new
	// Workflow.
	changes := make(chan event.GenericEvent)
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error { return r.watchPolicy(ctx, changes) })); err != nil {
		return err
	}
	if err := registerMetrics(r.Client, r.Options.ArgoNamespace); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("nsprov-trigger").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			ns, ok := o.(*corev1.Namespace)
			return ok && contract.IsRequested(ns)
		}))).
		Owns(&wfv1.Workflow{}).
		// A WorkflowTemplate that appears unblocks the namespaces waiting for it.
		Watches(&wfv1.WorkflowTemplate{}, handler.EnqueueRequestsFromMapFunc(r.waitingForTemplate)).
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

// allRequested lists every requested namespace.
func (r *Reconciler) allRequested(ctx context.Context, _ client.Object) []reconcile.Request {
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "listing namespaces after a policy change")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if contract.IsRequested(&list.Items[i]) {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: list.Items[i].Name}})
		}
	}
	return reqs
}

// waitingForTemplate lists the namespaces whose condition says the template
// was missing.
func (r *Reconciler) waitingForTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	if o.GetNamespace() != r.Options.ArgoNamespace || o.GetName() != r.Options.TemplateName {
		return nil
	}
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list); err != nil {
		log.FromContext(ctx).Error(err, "listing namespaces waiting for the WorkflowTemplate")
		return nil
	}
	var reqs []reconcile.Request
	for _, ns := range list.Items {
		for _, c := range ns.Status.Conditions {
			if c.Type == contract.ConditionProvisioned && c.Reason == contract.ReasonTemplateNotFound {
				reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns.Name}})
			}
		}
	}
	return reqs
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp != nil || !contract.IsRequested(ns) {
		return ctrl.Result{}, nil
	}

	b := r.Policies.Bundle()
	as := contract.As(r.Username)
	in := &policy.Request{Operation: "UPDATE", Username: as.Username, Groups: as.Groups, Object: ns, OldObject: ns}
	raw, err := b.Plan(ctx, in)
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("evaluating the plan of %s: %w", ns.Name, err)
	}
	if raw == nil {
		v, err := b.Validate(ctx, in)
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("evaluating the policy for %s: %w", ns.Name, err)
		}
		msg := "the policy defines no provisioning plan for this namespace"
		if !v.Allowed() {
			msg = "the namespace breaks the current policy: " + v.Message()
		}
		return ctrl.Result{}, r.setCondition(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonPolicyViolation, msg)
	}

	plan, err := DecodePlan(raw)
	if err != nil {
		return ctrl.Result{}, r.setCondition(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonPolicyViolation, err.Error())
	}
	wf := NewWorkflow(ns, plan, ns.Annotations[contract.ReprovisionAnnotation], r.Options)

	existing := &wfv1.Workflow{}
	err = r.Client.Get(ctx, client.ObjectKeyFromObject(wf), existing)
	switch {
	case apierrors.IsNotFound(err):
		tmpl := &wfv1.WorkflowTemplate{}
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: r.Options.ArgoNamespace, Name: r.Options.TemplateName}, tmpl); err != nil {
			if !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("reading WorkflowTemplate %s/%s: %w", r.Options.ArgoNamespace, r.Options.TemplateName, err)
			}
			msg := fmt.Sprintf("WorkflowTemplate %s/%s is not installed; install the nsprov chart, which creates it", r.Options.ArgoNamespace, r.Options.TemplateName)
			logger.Info("cannot provision yet", "namespace", ns.Name, "reason", msg)
			if err := r.setCondition(ctx, ns, nil, corev1.ConditionFalse, contract.ReasonTemplateNotFound, msg); err != nil {
				return ctrl.Result{}, err
			}
			return ctrl.Result{RequeueAfter: r.TemplateRetry}, nil
		}
		if err := r.Client.Create(ctx, wf); err != nil && !apierrors.IsAlreadyExists(err) {
			return ctrl.Result{}, fmt.Errorf("creating Workflow %s/%s: %w", wf.Namespace, wf.Name, err)
		} else if err == nil {
			logger.Info("provisioning started", "namespace", ns.Name, "workflow", wf.Name)
			r.Events.Eventf(ns, wf, corev1.EventTypeNormal, "ProvisioningStarted", "Provision",
				"started Workflow %s/%s", wf.Namespace, wf.Name)
		}
		existing = wf
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading Workflow %s/%s: %w", wf.Namespace, wf.Name, err)
	}

	// The condition first: once the annotation names a new Workflow, the
	// condition already speaks of it, so no reader sees the new Workflow's
	// name beside the previous Workflow's success.
	status, reason, msg := conditionFor(existing)
	if err := r.setCondition(ctx, ns, existing, status, reason, msg); err != nil {
		return ctrl.Result{}, err
	}
	ref := existing.Namespace + "/" + existing.Name
	if ns.Annotations[contract.WorkflowAnnotation] != ref {
		patch := client.MergeFrom(ns.DeepCopy())
		ns.Annotations[contract.WorkflowAnnotation] = ref
		if err := r.Client.Patch(ctx, ns, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("annotating %s with its workflow: %w", ns.Name, err)
		}
	}
	return ctrl.Result{}, r.prune(ctx, ns, existing.Name)
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

// setCondition writes the Provisioned condition when it changed, and records
// an Event on a change into Succeeded, Failed or a problem.
func (r *Reconciler) setCondition(ctx context.Context, ns *corev1.Namespace, wf *wfv1.Workflow, status corev1.ConditionStatus, reason, msg string) error {
	var cur *corev1.NamespaceCondition
	for i := range ns.Status.Conditions {
		if ns.Status.Conditions[i].Type == contract.ConditionProvisioned {
			cur = &ns.Status.Conditions[i]
		}
	}
	if cur != nil && cur.Status == status && cur.Reason == reason && cur.Message == msg {
		return nil
	}
	changed := cur == nil || cur.Status != status || cur.Reason != reason
	now := metav1.Now()
	next := corev1.NamespaceCondition{Type: contract.ConditionProvisioned, Status: status, Reason: reason, Message: msg, LastTransitionTime: now}
	if cur != nil && cur.Status == status {
		next.LastTransitionTime = cur.LastTransitionTime
	}
	if cur == nil {
		ns.Status.Conditions = append(ns.Status.Conditions, next)
	} else {
		*cur = next
	}
	if err := r.Client.Status().Update(ctx, ns); err != nil {
		return fmt.Errorf("setting condition %s=%s on %s: %w", contract.ConditionProvisioned, status, ns.Name, err)
	}
	if !changed {
		return nil
	}
	var related = wfOrNil(wf)
	if wf != nil && (reason == contract.ReasonSucceeded || reason == contract.ReasonFailed) {
		observeRun(wf, reason)
	}
	switch reason {
	case contract.ReasonSucceeded:
		r.Events.Eventf(ns, related, corev1.EventTypeNormal, "ProvisioningSucceeded", "Provision", "%s", msg)
	case contract.ReasonFailed, contract.ReasonTemplateNotFound, contract.ReasonPolicyViolation:
		r.Events.Eventf(ns, related, corev1.EventTypeWarning, "Provisioning"+reason, "Provision", "%s", truncate(msg, 1000))
	}
	return nil
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
