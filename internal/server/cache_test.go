package server

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/nsprov/nsprov/internal/contract"
)

// The manager strips managedFields from everything it caches and, with the
// controller on, caches only nsprov's Workflows in the Argo namespace,
// compacted.
func TestCacheOptions(t *testing.T) {
	for _, tc := range []struct {
		name       string
		controller bool
		wantByObj  int
	}{
		{name: "webhooks only", controller: false, wantByObj: 0},
		{name: "with the controller", controller: true, wantByObj: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := cacheOptions("argo", tc.controller)
			if o.DefaultTransform == nil {
				t.Fatal("no default transform: managedFields would be cached")
			}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
			if _, err := o.DefaultTransform(ns); err != nil || ns.ManagedFields != nil {
				t.Fatalf("default transform: err %v, managedFields %v", err, ns.ManagedFields)
			}
			if len(o.ByObject) != tc.wantByObj {
				t.Fatalf("%d ByObject entries, want %d", len(o.ByObject), tc.wantByObj)
			}
			for obj, by := range o.ByObject {
				if _, ok := by.Namespaces["argo"]; !ok || len(by.Namespaces) != 1 {
					t.Errorf("%T cached in %v, want only the Argo namespace", obj, by.Namespaces)
				}
				if _, ok := obj.(*wfv1.Workflow); !ok {
					continue
				}
				if by.Transform == nil {
					t.Error("Workflows are cached whole")
				}
				managed := labels.Set{contract.ManagedByLabel: contract.ManagedBy}
				if by.Label == nil || !by.Label.Matches(managed) || by.Label.Matches(labels.Set{}) {
					t.Errorf("Workflow label selector %v caches more than nsprov's", by.Label)
				}
			}
		})
	}
}

// workflowWithNodes is a provisioning Workflow as Argo leaves it, with the
// node tree given.
func workflowWithNodes(phase wfv1.WorkflowPhase, message string, nodes wfv1.Nodes) *wfv1.Workflow {
	start := metav1.Unix(1000, 0)
	end := metav1.Unix(1010, 0)
	return &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{
			Name: "nsprov-abc-123", Namespace: "argo", UID: "uid-1", ResourceVersion: "42",
			Labels:            map[string]string{contract.NamespaceLabel: "payments-dev", contract.ManagedByLabel: contract.ManagedBy, "workflows.argoproj.io/phase": string(phase)},
			Annotations:       map[string]string{contract.PlanHashAnnotation: "123"},
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "v1", Kind: "Namespace", Name: "payments-dev", UID: "ns-uid", Controller: ptr.To(true)}},
			ManagedFields:     []metav1.ManagedFieldsEntry{{Manager: "workflow-controller"}, {Manager: "nsprov"}},
			CreationTimestamp: start,
		},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "nsprov-provision"},
			Arguments:           wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "namespace", Value: wfv1.AnyStringPtr("payments-dev")}}},
			Shutdown:            wfv1.ShutdownStrategyStop,
		},
		Status: wfv1.WorkflowStatus{
			Phase: phase, Message: message, Progress: "3/4", StartedAt: start, FinishedAt: end,
			Nodes:                       nodes,
			StoredTemplates:             map[string]wfv1.Template{"namespaced/nsprov-provision/main": {Name: "main"}},
			StoredWorkflowSpec:          &wfv1.WorkflowSpec{Entrypoint: "main", Templates: []wfv1.Template{{Name: "main"}, {Name: "quota"}}},
			Conditions:                  wfv1.Conditions{{Type: wfv1.ConditionTypeCompleted, Status: metav1.ConditionTrue}},
			ResourcesDuration:           wfv1.ResourcesDuration{corev1.ResourceCPU: 3},
			Outputs:                     &wfv1.Outputs{Parameters: []wfv1.Parameter{{Name: "x", Value: wfv1.AnyStringPtr("y")}}},
			TaskResultsCompletionStatus: map[string]bool{"a": true},
		},
	}
}

func node(id string, typ wfv1.NodeType, phase wfv1.NodePhase, msg string, children ...string) wfv1.NodeStatus {
	return wfv1.NodeStatus{
		ID: id, Name: "nsprov-abc-123." + id, DisplayName: id, Type: typ, Phase: phase, Message: msg, Children: children,
		TemplateName: "apply", StartedAt: metav1.Unix(1000, 0), HostNodeName: "node-1",
		Outputs: &wfv1.Outputs{Result: ptr.To("applied")}, ResourcesDuration: wfv1.ResourcesDuration{corev1.ResourceCPU: 1},
	}
}

// compactWorkflow keeps what the controller reads of a Workflow (metadata
// but its annotations, phase, message, progress, times, the template reference and shutdown, the
// failed nodes that name failed steps) and drops the rest.
func TestCompactWorkflow(t *testing.T) {
	for _, tc := range []struct {
		name      string
		wf        *wfv1.Workflow
		wantNodes []string // ids of the nodes kept
	}{
		{
			name: "succeeded: no nodes kept",
			wf: workflowWithNodes(wfv1.WorkflowSucceeded, "", wfv1.Nodes{
				"root":  node("root", wfv1.NodeTypeDAG, wfv1.NodeSucceeded, "", "quota"),
				"quota": node("quota", wfv1.NodeTypePod, wfv1.NodeSucceeded, ""),
			}),
		},
		{
			name: "failed after retries: the retry node and its last attempt",
			wf: workflowWithNodes(wfv1.WorkflowFailed, "", wfv1.Nodes{
				"root":    node("root", wfv1.NodeTypeDAG, wfv1.NodeFailed, "child failed", "rb", "quota"),
				"quota":   node("quota", wfv1.NodeTypePod, wfv1.NodeSucceeded, ""),
				"rb":      node("rb", wfv1.NodeTypeRetry, wfv1.NodeFailed, "No more retries left", "rb-0", "rb-1", "rb-2"),
				"rb-0":    node("rb-0", wfv1.NodeTypePod, wfv1.NodeFailed, "forbidden 0"),
				"rb-1":    node("rb-1", wfv1.NodeTypePod, wfv1.NodeError, "forbidden 1"),
				"rb-2":    node("rb-2", wfv1.NodeTypePod, wfv1.NodeFailed, "forbidden 2"),
				"netpol":  node("netpol", wfv1.NodeTypePod, wfv1.NodeFailed, "denied"),
				"skipped": node("skipped", wfv1.NodeTypeSkipped, wfv1.NodeOmitted, ""),
			}),
			wantNodes: []string{"netpol", "rb", "rb-0", "rb-1", "rb-2", "root"},
		},
		{
			name: "an errored retry node keeps its last attempt, whatever its phase",
			wf: workflowWithNodes(wfv1.WorkflowError, "pod deleted", wfv1.Nodes{
				"rb":   node("rb", wfv1.NodeTypeRetry, wfv1.NodeError, "", "rb-0"),
				"rb-0": node("rb-0", wfv1.NodeTypePod, wfv1.NodeSucceeded, "last attempt's message"),
			}),
			wantNodes: []string{"rb", "rb-0"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := tc.wf.DeepCopy()
			out, err := compactWorkflow(tc.wf)
			if err != nil {
				t.Fatal(err)
			}
			got := out.(*wfv1.Workflow)

			wantMeta := orig.ObjectMeta
			wantMeta.ManagedFields, wantMeta.Annotations = nil, nil
			if !reflect.DeepEqual(got.ObjectMeta, wantMeta) {
				t.Errorf("metadata:\n got %+v\nwant %+v", got.ObjectMeta, wantMeta)
			}
			wantSpec := wfv1.WorkflowSpec{WorkflowTemplateRef: orig.Spec.WorkflowTemplateRef, Shutdown: orig.Spec.Shutdown}
			if !reflect.DeepEqual(got.Spec, wantSpec) {
				t.Errorf("spec:\n got %+v\nwant %+v", got.Spec, wantSpec)
			}
			s, o := got.Status, orig.Status
			if s.Phase != o.Phase || s.Message != o.Message || s.Progress != o.Progress ||
				!s.StartedAt.Equal(&o.StartedAt) || !s.FinishedAt.Equal(&o.FinishedAt) || s.Fulfilled() != o.Fulfilled() {
				t.Errorf("status summary: got %+v", s)
			}
			if s.StoredTemplates != nil || s.StoredWorkflowSpec != nil || s.Conditions != nil || s.ResourcesDuration != nil ||
				s.Outputs != nil || s.TaskResultsCompletionStatus != nil {
				t.Errorf("status keeps what nsprov never reads: %+v", s)
			}

			var ids []string
			for id := range s.Nodes {
				ids = append(ids, id)
			}
			if !sameSet(ids, tc.wantNodes) {
				t.Fatalf("kept nodes %v, want %v", ids, tc.wantNodes)
			}
			// What names a failed step: each failed node as it was, and
			// each failed retry node's children and last attempt.
			for id, n := range o.Nodes {
				k, ok := s.Nodes[id]
				if !ok {
					continue
				}
				if k.ID != n.ID || k.Name != n.Name || k.DisplayName != n.DisplayName || k.Type != n.Type || k.Phase != n.Phase || k.Message != n.Message {
					t.Errorf("node %s: got %+v, want the fields of %+v", id, k, n)
				}
				if k.Outputs != nil || k.ResourcesDuration != nil || k.HostNodeName != "" || k.TemplateName != "" {
					t.Errorf("node %s keeps what nsprov never reads: %+v", id, k)
				}
				if n.Type == wfv1.NodeTypeRetry && n.FailedOrError() {
					if !reflect.DeepEqual(k.Children, n.Children) {
						t.Errorf("retry node %s children %v, want %v", id, k.Children, n.Children)
					}
					if _, ok := s.Nodes[n.Children[len(n.Children)-1]]; !ok {
						t.Errorf("retry node %s lost its last attempt", id)
					}
				}
			}
		})
	}
}

// Any other object only loses its managedFields.
func TestCompactWorkflowOtherObjects(t *testing.T) {
	ns := &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: "a", Annotations: map[string]string{"k": "v"}, ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "m"}}},
		Status:     corev1.NamespaceStatus{Conditions: []corev1.NamespaceCondition{{Type: contract.ConditionProvisioned}}},
	}
	want := ns.DeepCopy()
	want.ManagedFields = nil
	out, err := compactWorkflow(ns)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("got %+v, want %+v", out, want)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return true
}

// BenchmarkCacheHeap measures the heap that 1,000 cached objects take, decoded
// as an informer decodes them, whole and as the manager caches them. The
// objects are a requested Namespace and the Workflow that provisioned it, as
// nsprov and Argo's own controller wrote them in the burst measurement
// (test/envtest/burst, NSPROV_BURST_FIXTURES refreshes them).
func BenchmarkCacheHeap(b *testing.B) {
	for _, tc := range []struct {
		name      string
		file      string
		newObj    func() any
		transform func(any) (any, error)
	}{
		{"namespace/whole", "provisioned-namespace.json", func() any { return &corev1.Namespace{} }, nil},
		{"namespace/cached", "provisioned-namespace.json", func() any { return &corev1.Namespace{} }, compactObject},
		{"workflow/whole", "provisioned-workflow.json", func() any { return &wfv1.Workflow{} }, nil},
		{"workflow/cached", "provisioned-workflow.json", func() any { return &wfv1.Workflow{} }, compactWorkflow},
	} {
		b.Run(tc.name, func(b *testing.B) {
			data, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				b.Fatal(err)
			}
			var total float64
			for b.Loop() {
				before := heapInUse()
				objs := make([]any, 1000)
				for i := range objs {
					obj := tc.newObj()
					if err := json.Unmarshal(data, obj); err != nil {
						b.Fatal(err)
					}
					if tc.transform != nil {
						if obj, err = tc.transform(obj); err != nil {
							b.Fatal(err)
						}
					}
					objs[i] = obj
				}
				after := heapInUse()
				runtime.KeepAlive(objs)
				total += float64(after) - float64(before)
			}
			b.ReportMetric(total/float64(b.N)/(1<<20), "MiB/1000")
		})
	}
}

// heapInUse is the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
