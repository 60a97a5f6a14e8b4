package server

import (
	"slices"
	"unique"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/trigger"
)

// cacheOptions are what the manager's informers keep, so that memory stays
// flat as namespaces grow: every cached object loses its managedFields
// (written by every client that touches it, never read by nsprov), and with
// the controller on, only nsprov's own Workflows in the Argo namespace are
// cached (trigger.CacheOptions), each reduced by compactWorkflow.
//
// Objects read through the manager's client are therefore partial: they may
// be deleted, patched (a patch computed between two partial copies carries
// only what changed) or read, but never written back whole with Update.
// Namespaces keep everything but their managedFields (compactNamespace):
// the policy's input is the whole Namespace.
//
// Of what is kept, the strings that many objects share (label and
// annotation keys, a team's name, "Active", "argo", a Pending Workflow's
// message...) are held once (intern), not once per object: with thousands of
// namespaces they are a large part of what the cache holds.
func cacheOptions(argoNamespace string, controller bool) cache.Options {
	o := cache.Options{DefaultTransform: compactObject}
	if !controller {
		return o
	}
	o.ByObject = trigger.CacheOptions(argoNamespace)
	for obj, by := range o.ByObject {
		if _, ok := obj.(*wfv1.Workflow); ok {
			// A ByObject transform replaces DefaultTransform.
			by.Transform = compactObject
			o.ByObject[obj] = by
		}
	}
	return o
}

// compactWorkflow keeps of a Workflow what nsprov reads (internal/trigger:
// the Provisioned condition, the metrics, pruning, cancelling) and drops the
// rest, in place:
//   - metadata: all but managedFields and annotations (names, labels, owner
//     references, timestamps); nothing reads a cached Workflow's annotations
//     (the plan hash and run key they carry are in the Workflow's name), and
//     every write of one is a patch, which leaves them as they are;
//   - spec: the template reference, shutdown and suspend; not the arguments
//     (the plan they carry is named by the Workflow's name);
//   - status: phase, message, progress, start and finish times, and of the
//     node tree only what names failed steps: the failed or errored nodes
//     and the last attempt of each failed retry node, with their id, name,
//     display name, type, phase, message and, for retry nodes, children. Not
//     the stored template, the stored WorkflowTemplate spec, outputs,
//     conditions, resource durations or the other nodes: for a provisioned
//     namespace they are most of the Workflow's size.
//
// Any other object passes as compactObject passes it.
func compactWorkflow(in any) (any, error) {
	wf, ok := in.(*wfv1.Workflow)
	if !ok {
		return compactObject(in)
	}
	wf.ManagedFields, wf.Annotations = nil, nil
	compactMeta(&wf.ObjectMeta)
	for i := range wf.OwnerReferences {
		ref := &wf.OwnerReferences[i]
		ref.APIVersion, ref.Kind = intern(ref.APIVersion), intern(ref.Kind)
		if v := wf.Labels[contract.NamespaceLabel]; ref.Name == v {
			ref.Name = v // the same bytes as the label's
		}
	}
	spec := wf.Spec
	wf.Spec = wfv1.WorkflowSpec{
		WorkflowTemplateRef: spec.WorkflowTemplateRef,
		Shutdown:            spec.Shutdown,
		Suspend:             spec.Suspend,
	}
	if ref := wf.Spec.WorkflowTemplateRef; ref != nil {
		ref.Name = intern(ref.Name)
	}
	st := wf.Status
	wf.Status = wfv1.WorkflowStatus{
		Phase:      wfv1.WorkflowPhase(intern(string(st.Phase))),
		StartedAt:  st.StartedAt,
		FinishedAt: st.FinishedAt,
		Progress:   wfv1.Progress(intern(string(st.Progress))),
		Message:    intern(st.Message),
		Nodes:      failedNodes(st.Nodes),
	}
	return wf, nil
}

// compactObject is the cache's transform: Workflows as compactWorkflow
// keeps them, Namespaces as compactNamespace does, anything else without
// its managedFields.
func compactObject(in any) (any, error) {
	switch o := in.(type) {
	case *wfv1.Workflow:
		return compactWorkflow(o)
	case *corev1.Namespace:
		return compactNamespace(o), nil
	}
	return cache.TransformStripManagedFields()(in)
}

// compactNamespace strips a Namespace's managedFields and holds its shared
// strings once; everything else stays, as the policy reads it. The
// annotations that name the namespace's own Workflow and run key, and the
// kubernetes.io/metadata.name label (its name), are its own.
func compactNamespace(ns *corev1.Namespace) *corev1.Namespace {
	ns.ManagedFields = nil
	compactMeta(&ns.ObjectMeta, contract.WorkflowAnnotation, contract.ProvisionedPlanAnnotation)
	for i, f := range ns.Spec.Finalizers {
		ns.Spec.Finalizers[i] = corev1.FinalizerName(intern(string(f)))
	}
	ns.Status.Phase = corev1.NamespacePhase(intern(string(ns.Status.Phase)))
	for i := range ns.Status.Conditions {
		c := &ns.Status.Conditions[i]
		c.Type = corev1.NamespaceConditionType(intern(string(c.Type)))
		c.Status = corev1.ConditionStatus(intern(string(c.Status)))
		c.Reason = intern(c.Reason)
	}
	return ns
}

// compactMeta holds the shared strings of an object's metadata once: its
// namespace, its label and annotation keys, and their values, but for the
// annotations named own and the values equal to the object's name (which
// then share its bytes), which belong to the one object.
func compactMeta(m *metav1.ObjectMeta, own ...string) {
	m.Namespace = intern(m.Namespace)
	value := func(k, v string) string {
		switch {
		case v == m.Name:
			return m.Name
		case slices.Contains(own, k):
			return v
		}
		return intern(v)
	}
	if m.Labels != nil {
		labels := make(map[string]string, len(m.Labels))
		for k, v := range m.Labels {
			labels[intern(k)] = value(k, v)
		}
		m.Labels = labels
	}
	if m.Annotations != nil {
		annotations := make(map[string]string, len(m.Annotations))
		for k, v := range m.Annotations {
			annotations[intern(k)] = value(k, v)
		}
		m.Annotations = annotations
	}
}

// intern is s held once for all the objects that have it: the strings
// unique hands out are freed when no object holds them any more.
func intern(s string) string {
	if s == "" {
		return ""
	}
	return unique.Make(s).Value()
}

// failedNodes is the part of a node tree that names failed steps: the failed
// or errored nodes, and the last attempt of every failed retry node (whose
// message is the step's). Nil when nothing failed.
func failedNodes(nodes wfv1.Nodes) wfv1.Nodes {
	var out wfv1.Nodes
	keep := func(id string, n wfv1.NodeStatus) {
		if out == nil {
			out = wfv1.Nodes{}
		}
		c := wfv1.NodeStatus{
			ID: n.ID, Name: n.Name, DisplayName: n.DisplayName, Type: n.Type, Phase: n.Phase, Message: n.Message,
		}
		if n.Type == wfv1.NodeTypeRetry {
			c.Children = append([]string(nil), n.Children...)
		}
		out[id] = c
	}
	for id, n := range nodes {
		if !n.FailedOrError() {
			continue
		}
		keep(id, n)
		if n.Type == wfv1.NodeTypeRetry && len(n.Children) > 0 {
			last := n.Children[len(n.Children)-1]
			if c, ok := nodes[last]; ok {
				keep(last, c)
			}
		}
	}
	return out
}
