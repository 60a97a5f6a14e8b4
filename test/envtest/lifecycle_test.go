package envtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/trigger"
)

// workflowsOf lists the Workflows nsprov made for a namespace.
func workflowsOf(t *testing.T, namespace string) []wfv1.Workflow {
	t.Helper()
	list := &wfv1.WorkflowList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ArgoNamespace), client.MatchingLabels{contract.NamespaceLabel: namespace}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// condition is the Provisioned condition of ns, or a zero one.
func condition(ns *corev1.Namespace) corev1.NamespaceCondition {
	for _, c := range ns.Status.Conditions {
		if c.Type == contract.ConditionProvisioned {
			return c
		}
	}
	return corev1.NamespaceCondition{}
}

// consistently checks that check keeps returning nil for d: how a test
// shows that something does not happen.
func consistently(t *testing.T, d time.Duration, what string, check func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if err := check(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// TestVanishedWorkflowIsHistory deletes a succeeded Workflow as Argo's TTL
// does: the namespace is not provisioned again and stays Provisioned=True.
func TestVanishedWorkflowIsHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("ttl-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "ttl-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	if ns.Annotations[contract.ProvisionedPlanAnnotation] == "" {
		t.Errorf("no %s annotation on a provisioned namespace: %v", contract.ProvisionedPlanAnnotation, ns.Annotations)
	}
	ref := ns.Annotations[contract.WorkflowAnnotation]
	wf := &wfv1.Workflow{}
	wf.Namespace, wf.Name = ArgoNamespace, strings.TrimPrefix(ref, ArgoNamespace+"/")
	if err := env.Client.Delete(ctx, wf); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "the workflow deleted", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), &wfv1.Workflow{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("still there: %v", err)
		}
		return nil
	})
	consistently(t, 10*time.Second, "after the TTL deleted the workflow", func() error {
		if wfs := workflowsOf(t, "ttl-dev"); len(wfs) != 0 {
			return fmt.Errorf("%d workflows, want none (%s recreated?)", len(wfs), wfs[0].Name)
		}
		ns := get(t, "ttl-dev")
		if c := condition(ns); c.Status != corev1.ConditionTrue || c.Reason != contract.ReasonSucceeded {
			return fmt.Errorf("condition %s/%s: %s, want True/Succeeded", c.Status, c.Reason, c.Message)
		}
		if got := ns.Annotations[contract.WorkflowAnnotation]; got != ref {
			return fmt.Errorf("workflow annotation %q, want %q kept", got, ref)
		}
		return nil
	})
}

// blockQuotas makes the API server refuse ResourceQuotas in namespace, so
// the provisioning Workflow's quota step fails (after Argo's own retries of
// the step, about 30s), until the returned func lifts the block.
func blockQuotas(t *testing.T, namespace string) (unblock func()) {
	t.Helper()
	return BlockQuotas(t, env.Client, namespace)
}

// nextRetry reads "attempt N; next retry at T" from a Failed condition's
// message and returns N and how long after the failure T is.
func nextRetry(t *testing.T, c corev1.NamespaceCondition) (int, time.Duration) {
	t.Helper()
	var attempt int
	var at string
	i := strings.Index(c.Message, "(attempt ")
	if i < 0 {
		t.Fatalf("condition message %q has no attempt and next retry", c.Message)
	}
	if _, err := fmt.Sscanf(c.Message[i:], "(attempt %d; next retry at %s", &attempt, &at); err != nil {
		t.Fatalf("condition message %q: %v", c.Message, err)
	}
	next, err := time.Parse(time.RFC3339, strings.TrimSuffix(at, ")"))
	if err != nil {
		t.Fatalf("condition message %q: %v", c.Message, err)
	}
	return attempt, next.Sub(c.LastTransitionTime.Time)
}

// TestFailedProvisioningIsRetried: a step fails, the namespace is retried
// with growing delays (the harness's --retry-base-delay is 2s), each retry
// an Event, until the cause is removed; after the success nothing runs again.
func TestFailedProvisioningIsRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	unblock := blockQuotas(t, "retry-dev")
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("retry-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "retry-dev", corev1.ConditionFalse, contract.ReasonFailed)
	attempt1, delay1 := nextRetry(t, condition(ns))
	if attempt1 != 1 {
		t.Errorf("first failure: attempt %d, want 1", attempt1)
	}
	// The condition and the annotation are two writes (status, then
	// metadata): the annotation follows the condition.
	Eventually(t, 30*time.Second, "nsprov.io/provisioning: Failed after the first failure", func() error {
		if got := get(t, "retry-dev").Annotations[contract.ProvisioningAnnotation]; got != contract.ProvisioningFailed {
			return fmt.Errorf("provisioning %q", got)
		}
		return nil
	})
	Eventually(t, 30*time.Second, "the second attempt", func() error {
		if ref := get(t, "retry-dev").Annotations[contract.WorkflowAnnotation]; !strings.HasSuffix(ref, "-r2") {
			return fmt.Errorf("workflow %q", ref)
		}
		return nil
	})
	wantEvents(t, "retry-dev", "ProvisioningRetried")
	var delay2 time.Duration
	Eventually(t, 3*time.Minute, "the second attempt failed", func() error {
		c := condition(get(t, "retry-dev"))
		if c.Reason != contract.ReasonFailed || !strings.Contains(c.Message, "-r2 failed") {
			return fmt.Errorf("condition %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		var attempt int
		attempt, delay2 = nextRetry(t, c)
		if attempt != 2 {
			return fmt.Errorf("attempt %d, want 2", attempt)
		}
		return nil
	})
	if delay1 < 2*time.Second || delay2 <= delay1 {
		t.Errorf("retry delays %s then %s, want at least the base 2s and growing", delay1, delay2)
	}

	unblock()
	ns = waitCondition(t, "retry-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	ref := ns.Annotations[contract.WorkflowAnnotation]
	if trigger.AttemptOf(strings.TrimPrefix(ref, ArgoNamespace+"/")) < 3 {
		t.Errorf("succeeded with %s, want the third attempt or a later one", ref)
	}
	n := len(workflowsOf(t, "retry-dev"))
	consistently(t, 10*time.Second, "after the success", func() error {
		ns := get(t, "retry-dev")
		if got := ns.Annotations[contract.WorkflowAnnotation]; got != ref {
			return fmt.Errorf("a new workflow %s after the success of %s", got, ref)
		}
		if got := len(workflowsOf(t, "retry-dev")); got != n {
			return fmt.Errorf("%d workflows, had %d", got, n)
		}
		return nil
	})
}

// TestWaitForAChange: right after a requester changes her namespace, one
// `kubectl wait` on nsprov.io/provisioning waits for that change's
// provisioning (not the previous success), and she cannot fake it.
func TestWaitForAChange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	created := request("wait-dev", "payments", "development", map[string]string{tierKey: "micro"})
	if err := alice.client.Create(ctx, created); err != nil {
		t.Fatal(err)
	}
	if got := created.Annotations[contract.ProvisioningAnnotation]; got != contract.ProvisioningPending {
		t.Errorf("created namespace: provisioning %q, want Pending", got)
	}
	assets, err := AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := env.UserKubeconfig("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	kubectlWait := func() {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(assets, "kubectl"), "--kubeconfig", path, "wait", "ns/wait-dev",
			`--for=jsonpath={.metadata.annotations.nsprov\.io/provisioning}=Succeeded`, "--timeout=3m")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("kubectl wait: %v\n%s", err, out)
		}
	}
	kubectlWait()
	quota := &corev1.ResourceQuota{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "wait-dev", Name: "nsprov-quota"}, quota); err != nil {
		t.Fatalf("after kubectl wait: %v", err)
	}

	// A tier change, with a forged success: the update's result is
	// already Pending, and the wait returns once the new quota is there.
	updated := &corev1.Namespace{}
	if err := alice.update(ctx, "wait-dev", func(ns *corev1.Namespace) {
		ns.Annotations[tierKey] = "small"
		ns.Annotations[contract.ProvisioningAnnotation] = contract.ProvisioningSucceeded
		ns.Annotations[contract.ProvisionedPlanAnnotation] = "forged"
		updated = ns
	}); err != nil {
		t.Fatal(err)
	}
	if got := updated.Annotations[contract.ProvisioningAnnotation]; got != contract.ProvisioningPending {
		t.Errorf("after the tier change (with a forged Succeeded): provisioning %q, want Pending", got)
	}
	if got := updated.Annotations[contract.ProvisionedPlanAnnotation]; got == "forged" {
		t.Errorf("a requester set %s", contract.ProvisionedPlanAnnotation)
	}
	kubectlWait()
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(quota), quota); err != nil {
		t.Fatal(err)
	}
	if got := quota.Spec.Hard["requests.cpu"]; got.String() != "2" {
		t.Errorf("when kubectl wait returned: requests.cpu = %s, want the small tier's 2", got.String())
	}
	if c := condition(get(t, "wait-dev")); c.Status != corev1.ConditionTrue {
		t.Errorf("when kubectl wait returned: condition %s/%s", c.Status, c.Reason)
	}

	// With nothing pending, a requester cannot set it either.
	if err := alice.update(ctx, "wait-dev", func(ns *corev1.Namespace) {
		ns.Annotations[contract.ProvisioningAnnotation] = contract.ProvisioningFailed
		updated = ns
	}); err != nil {
		t.Fatal(err)
	}
	if got := updated.Annotations[contract.ProvisioningAnnotation]; got != contract.ProvisioningSucceeded {
		t.Errorf("a requester's own value: provisioning %q, want Succeeded kept", got)
	}
}

// runningWorkflow waits until the namespace's Workflow runs and returns it.
func runningWorkflow(t *testing.T, namespace string) *wfv1.Workflow {
	t.Helper()
	ns := waitCondition(t, namespace, corev1.ConditionUnknown, contract.ReasonRunning)
	wf := &wfv1.Workflow{}
	ref := ns.Annotations[contract.WorkflowAnnotation]
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ArgoNamespace, Name: strings.TrimPrefix(ref, ArgoNamespace+"/")}, wf); err != nil {
		t.Fatal(err)
	}
	return wf
}

// TestDeletingANamespaceStopsItsWorkflow deletes a namespace while its
// Workflow runs (a blocked quota step keeps it running): the Workflow is
// shut down, nothing is created for the terminating namespace, and the
// Workflow goes with the namespace.
func TestDeletingANamespaceStopsItsWorkflow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	blockQuotas(t, "doomed-dev")
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("doomed-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	wf := runningWorkflow(t, "doomed-dev")
	// A finalizer holds the namespace in Terminating while the test looks.
	hold := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold", Namespace: "doomed-dev", Finalizers: []string{"test.nsprov.io/hold"}}}
	if err := env.Client.Create(ctx, hold); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed-dev"}}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, time.Minute, "the workflow shut down", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
			return err
		}
		if wf.Spec.Shutdown == "" {
			return fmt.Errorf("workflow %s runs on (phase %s)", wf.Name, wf.Status.Phase)
		}
		return nil
	})
	consistently(t, 10*time.Second, "while the namespace terminates", func() error {
		if wfs := workflowsOf(t, "doomed-dev"); len(wfs) != 1 || wfs[0].Name != wf.Name {
			return fmt.Errorf("%d workflows, want only %s", len(wfs), wf.Name)
		}
		return nil
	})
	Eventually(t, time.Minute, "the hold released", func() error {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(hold), hold); err != nil {
			return client.IgnoreNotFound(err)
		}
		hold.Finalizers = nil
		return env.Client.Update(ctx, hold)
	})
	Eventually(t, 2*time.Minute, "the namespace and its workflow gone", func() error {
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "doomed-dev"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("namespace: %v", err)
		}
		if wfs := workflowsOf(t, "doomed-dev"); len(wfs) != 0 {
			return fmt.Errorf("%d workflows left", len(wfs))
		}
		return nil
	})
}

// TestCancel: the requester cancels a running provisioning with
// nsprov.io/cancel; the Workflow is shut down, the condition says Cancelled,
// the annotation is consumed, and nothing runs again until a new request.
func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	blockQuotas(t, "cancel-dev")
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("cancel-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	wf := runningWorkflow(t, "cancel-dev")
	if err := alice.update(ctx, "cancel-dev", func(ns *corev1.Namespace) { ns.Annotations[contract.CancelAnnotation] = "true" }); err != nil {
		t.Fatalf("alice cancelling: %v", err)
	}
	ns := waitCondition(t, "cancel-dev", corev1.ConditionFalse, contract.ReasonCancelled)
	if !strings.Contains(condition(ns).Message, wf.Name) {
		t.Errorf("condition message %q does not name the stopped workflow %s", condition(ns).Message, wf.Name)
	}
	Eventually(t, 30*time.Second, "the cancel consumed", func() error {
		ns := get(t, "cancel-dev")
		if _, ok := ns.Annotations[contract.CancelAnnotation]; ok || ns.Annotations[contract.ProvisioningAnnotation] != contract.ProvisioningCancelled {
			return fmt.Errorf("annotations %v", ns.Annotations)
		}
		return nil
	})
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
		t.Fatal(err)
	}
	if wf.Spec.Shutdown == "" {
		t.Errorf("workflow %s not shut down", wf.Name)
	}
	wantEvents(t, "cancel-dev", "ProvisioningCancelled")
	consistently(t, 10*time.Second, "after the cancel", func() error {
		if wfs := workflowsOf(t, "cancel-dev"); len(wfs) != 1 {
			return fmt.Errorf("%d workflows, want only the cancelled one", len(wfs))
		}
		if c := condition(get(t, "cancel-dev")); c.Reason != contract.ReasonCancelled {
			return fmt.Errorf("condition %s/%s: %s", c.Status, c.Reason, c.Message)
		}
		return nil
	})
}

// TestTemplateChangeReprovisions runs alone (not parallel), as it changes
// the WorkflowTemplate every namespace uses: a change of the template's
// metadata re-provisions nothing, a change of its content re-provisions the
// namespaces.
func TestTemplateChangeReprovisions(t *testing.T) {
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("tmpl-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ref := waitCondition(t, "tmpl-dev", corev1.ConditionTrue, contract.ReasonSucceeded).Annotations[contract.WorkflowAnnotation]
	tmpl := &wfv1.WorkflowTemplate{}
	key := client.ObjectKey{Namespace: ArgoNamespace, Name: trigger.TemplateName}
	change := func(f func(*wfv1.WorkflowTemplate)) {
		t.Helper()
		if err := env.Client.Get(ctx, key, tmpl); err != nil {
			t.Fatal(err)
		}
		f(tmpl)
		if err := env.Client.Update(ctx, tmpl); err != nil {
			t.Fatal(err)
		}
	}
	change(func(w *wfv1.WorkflowTemplate) { metav1.SetMetaDataLabel(&w.ObjectMeta, "example.com/touched", "yes") })
	consistently(t, 5*time.Second, "after a metadata change of the template", func() error {
		if got := get(t, "tmpl-dev").Annotations[contract.WorkflowAnnotation]; got != ref {
			return fmt.Errorf("re-provisioned with %s", got)
		}
		return nil
	})
	change(func(w *wfv1.WorkflowTemplate) {
		if w.Spec.WorkflowMetadata == nil {
			w.Spec.WorkflowMetadata = &wfv1.WorkflowMetadata{}
		}
		w.Spec.WorkflowMetadata.Labels = map[string]string{"example.com/template-revision": "2"}
	})
	t.Cleanup(func() {
		change(func(w *wfv1.WorkflowTemplate) {
			delete(w.Spec.WorkflowMetadata.Labels, "example.com/template-revision")
		})
	})
	waitNewWorkflow(t, "tmpl-dev", ref)
}
