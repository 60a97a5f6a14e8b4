package trigger

import (
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/contract"
)

// TestFailedConditionNamesTheFailedSteps: Argo leaves a Workflow's message
// empty when a DAG task fails; the condition carries each failed step's last
// message instead, as Argo v3.7.3 records the nodes.
func TestFailedConditionNamesTheFailedSteps(t *testing.T) {
	forbidden := `Error from server (Forbidden): rolebindings "x" is forbidden`
	tests := []struct {
		name string
		wf   wfv1.WorkflowStatus
		want string
	}{
		{
			name: "the workflow's own message wins",
			wf:   wfv1.WorkflowStatus{Phase: wfv1.WorkflowError, Message: `workflowtemplates.argoproj.io "t" not found`},
			want: `Workflow argo/wf failed: workflowtemplates.argoproj.io "t" not found`,
		},
		{
			name: "a retried step: the message of its last attempt",
			wf: wfv1.WorkflowStatus{Phase: wfv1.WorkflowFailed, Nodes: wfv1.Nodes{
				"wf":   {ID: "wf", Type: wfv1.NodeTypeDAG, Phase: wfv1.NodeFailed, DisplayName: "wf", Children: []string{"r"}},
				"r":    {ID: "r", Type: wfv1.NodeTypeRetry, Phase: wfv1.NodeFailed, DisplayName: "rbac(0:x)", Message: "No more retries left", Children: []string{"r-0", "r-1"}},
				"r-0":  {ID: "r-0", Type: wfv1.NodeTypePod, Phase: wfv1.NodeFailed, DisplayName: "rbac(0:x)(0)", Message: "first attempt"},
				"r-1":  {ID: "r-1", Type: wfv1.NodeTypePod, Phase: wfv1.NodeFailed, DisplayName: "rbac(0:x)(1)", Message: forbidden},
				"ok":   {ID: "ok", Type: wfv1.NodeTypePod, Phase: wfv1.NodeSucceeded, DisplayName: "quota"},
				"lone": {ID: "lone", Type: wfv1.NodeTypePod, Phase: wfv1.NodeError, DisplayName: "limits", Message: "pod deleted"},
			}},
			want: "Workflow argo/wf failed: limits: pod deleted; rbac(0:x): " + forbidden,
		},
		{
			name: "nothing to say",
			wf:   wfv1.WorkflowStatus{Phase: wfv1.WorkflowFailed},
			want: "Workflow argo/wf failed: no message",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wf := &wfv1.Workflow{Status: tt.wf}
			wf.Namespace, wf.Name = "argo", "wf"
			status, reason, msg := conditionFor(wf)
			if status != corev1.ConditionFalse || reason != contract.ReasonFailed || msg != tt.want {
				t.Errorf("conditionFor = %s, %s, %q; want False, %s, %q", status, reason, msg, contract.ReasonFailed, tt.want)
			}
		})
	}
}
