package server

import (
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/cache"

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
// Namespaces keep everything but their managedFields: the policy's input is
// the whole Namespace, and the controller updates their status.
func cacheOptions(argoNamespace string, controller bool) cache.Options {
	o := cache.Options{DefaultTransform: cache.TransformStripManagedFields()}
	if !controller {
		return o
	}
	o.ByObject = trigger.CacheOptions(argoNamespace)
	for obj, by := range o.ByObject {
		if _, ok := obj.(*wfv1.Workflow); ok {
			// A ByObject transform replaces DefaultTransform; compactWorkflow
			// strips the managedFields itself.
			by.Transform = compactWorkflow
			o.ByObject[obj] = by
		}
	}
	return o
}

// compactWorkflow keeps of a Workflow what nsprov reads (internal/trigger:
// the Provisioned condition, the metrics, pruning, cancelling) and drops the
// rest, in place:
//   - metadata: all but managedFields (names, labels, annotations such as the
//     plan hash, owner references, timestamps);
//   - spec: the template reference, shutdown and suspend; not the arguments
//     (the plan they carry is named by the Workflow's name and its
//     nsprov.io/plan-hash annotation);
//   - status: phase, message, progress, start and finish times, and of the
//     node tree only what names failed steps: the failed or errored nodes
//     and the last attempt of each failed retry node, with their id, name,
//     display name, type, phase, message and, for retry nodes, children. Not
//     the stored template, the stored WorkflowTemplate spec, outputs,
//     conditions, resource durations or the other nodes: for a provisioned
//     namespace they are most of the Workflow's size.
//
// Any other object passes with only its managedFields stripped.
func compactWorkflow(in any) (any, error) {
	wf, ok := in.(*wfv1.Workflow)
	if !ok {
		return cache.TransformStripManagedFields()(in)
	}
	wf.ManagedFields = nil
	spec := wf.Spec
	wf.Spec = wfv1.WorkflowSpec{
		WorkflowTemplateRef: spec.WorkflowTemplateRef,
		Shutdown:            spec.Shutdown,
		Suspend:             spec.Suspend,
	}
	st := wf.Status
	wf.Status = wfv1.WorkflowStatus{
		Phase:      st.Phase,
		StartedAt:  st.StartedAt,
		FinishedAt: st.FinishedAt,
		Progress:   st.Progress,
		Message:    st.Message,
		Nodes:      failedNodes(st.Nodes),
	}
	return wf, nil
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
