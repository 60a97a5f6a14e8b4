package envtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// provisioned waits until the namespace's Provisioned condition has the
// status, as `kubectl wait --for=condition=Provisioned` would, and returns
// the namespace.
func waitCondition(t *testing.T, name string, status corev1.ConditionStatus, reason string) *corev1.Namespace {
	t.Helper()
	var ns *corev1.Namespace
	// Argo's own controller runs the steps as pods; a failing step is retried
	// with the template's backoff (2s, 4s, 8s, 16s) before the Workflow fails.
	Eventually(t, 3*time.Minute, fmt.Sprintf("namespace %s condition Provisioned=%s (%s)", name, status, reason), func() error {
		ns = get(t, name)
		for _, c := range ns.Status.Conditions {
			if c.Type == contract.ConditionProvisioned {
				if c.Status == status && c.Reason == reason {
					return nil
				}
				return fmt.Errorf("condition is %s/%s: %s", c.Status, c.Reason, c.Message)
			}
		}
		return fmt.Errorf("no Provisioned condition yet (annotations %v)", ns.Annotations)
	})
	return ns
}

// waitNewWorkflow waits until the namespace's workflow annotation names a
// workflow other than previous and the condition says that this workflow
// (not an earlier one) has provisioned it.
func waitNewWorkflow(t *testing.T, name, previous string) *corev1.Namespace {
	t.Helper()
	var current string
	Eventually(t, 30*time.Second, "a new workflow for "+name, func() error {
		if current = get(t, name).Annotations[contract.WorkflowAnnotation]; current == "" || current == previous {
			return fmt.Errorf("workflow annotation still %q", current)
		}
		return nil
	})
	ns := waitCondition(t, name, corev1.ConditionTrue, contract.ReasonSucceeded)
	for _, c := range ns.Status.Conditions {
		if c.Type == contract.ConditionProvisioned && !strings.Contains(c.Message, current) {
			t.Fatalf("namespace %s: condition %q does not speak of its workflow %s", name, c.Message, current)
		}
	}
	return ns
}

func networkPolicies(t *testing.T, ns string) map[string]networkingv1.NetworkPolicy {
	t.Helper()
	list := &networkingv1.NetworkPolicyList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := map[string]networkingv1.NetworkPolicy{}
	for _, np := range list.Items {
		if np.Labels["app.kubernetes.io/managed-by"] != "nsprov" {
			t.Errorf("network policy %s/%s is not labelled managed-by nsprov: %v", ns, np.Name, np.Labels)
		}
		out[np.Name] = np
	}
	return out
}

func policyNames(m map[string]networkingv1.NetworkPolicy) []string {
	var names []string
	for n := range m {
		names = append(names, n)
	}
	return names
}

func TestProvisioning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("ledger-dev", "payments", "development", map[string]string{featuresKey: "istio"})); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "ledger-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	ref := ns.Annotations[contract.WorkflowAnnotation]
	if !strings.HasPrefix(ref, ArgoNamespace+"/nsprov-") {
		t.Fatalf("workflow annotation = %q", ref)
	}

	wf := &wfv1.Workflow{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: ArgoNamespace, Name: strings.TrimPrefix(ref, ArgoNamespace+"/")}, wf); err != nil {
		t.Fatal(err)
	}
	if len(wf.OwnerReferences) != 1 || wf.OwnerReferences[0].UID != ns.UID || wf.Labels[contract.NamespaceLabel] != "ledger-dev" {
		t.Errorf("workflow owner %v labels %v, want owned by the namespace", wf.OwnerReferences, wf.Labels)
	}
	args := map[string]string{}
	for _, p := range wf.Spec.Arguments.Parameters {
		args[p.Name] = p.Value.String()
	}
	for k, v := range map[string]string{
		"namespace": "ledger-dev", "team": "payments", "tier": "small", "quota-cpu": "2", "quota-memory": "4Gi",
		"default-deny": "true", "allow-feature-ingress": "true", "ingress-from": `["istio-system"]`,
	} {
		if args[k] != v {
			t.Errorf("workflow argument %s = %q, want %q", k, args[k], v)
		}
	}

	quota := &corev1.ResourceQuota{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ledger-dev", Name: "nsprov-quota"}, quota); err != nil {
		t.Fatal(err)
	}
	for res, want := range map[corev1.ResourceName]string{
		"requests.cpu": "2", "limits.cpu": "2", "requests.memory": "4Gi", "limits.memory": "4Gi", "requests.storage": "20Gi",
	} {
		if got := quota.Spec.Hard[res]; got.Cmp(resource.MustParse(want)) != 0 {
			t.Errorf("quota %s = %s, want %s", res, got.String(), want)
		}
	}
	limits := &corev1.LimitRange{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ledger-dev", Name: "nsprov-limits"}, limits); err != nil {
		t.Fatal(err)
	}
	if d := limits.Spec.Limits[0].Default[corev1.ResourceCPU]; d.String() != "500m" {
		t.Errorf("container default cpu = %s, want 500m", d.String())
	}
	rb := &rbacv1.RoleBinding{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ledger-dev", Name: "nsprov-team-edit"}, rb); err != nil {
		t.Fatal(err)
	}
	if rb.RoleRef.Name != "edit" || len(rb.Subjects) != 1 || rb.Subjects[0].Name != "team-payments" || rb.Subjects[0].Kind != "Group" {
		t.Errorf("role binding %+v %+v, want group team-payments bound to edit", rb.RoleRef, rb.Subjects)
	}
	nps := networkPolicies(t, "ledger-dev")
	for _, want := range []string{"nsprov-default-deny", "nsprov-allow-dns", "nsprov-allow-same-namespace", "nsprov-allow-feature-ingress", "nsprov-allow-feature-egress"} {
		if _, ok := nps[want]; !ok {
			t.Errorf("network policy %s missing; have %v", want, policyNames(nps))
		}
	}
	if _, ok := nps["nsprov-allow-team"]; ok {
		t.Errorf("isolated mode got the team policy")
	}
	if ns.Labels["istio-injection"] != "enabled" {
		t.Errorf("feature istio did not label the namespace: %v", ns.Labels)
	}
	wantEvents(t, "ledger-dev", "ProvisioningStarted", "ProvisioningSucceeded")

	// Open mode and no features: the default deny and the feature policies
	// go, and so does the istio label.
	if err := alice.update(ctx, "ledger-dev", func(ns *corev1.Namespace) {
		ns.Annotations[netpolKey] = "open"
		delete(ns.Annotations, featuresKey)
	}); err != nil {
		t.Fatalf("alice opening ledger-dev: %v", err)
	}
	ns = waitNewWorkflow(t, "ledger-dev", ref)
	if nps := networkPolicies(t, "ledger-dev"); len(nps) != 0 {
		t.Errorf("open mode left network policies behind: %v", policyNames(nps))
	}
	if _, ok := ns.Labels["istio-injection"]; ok {
		t.Errorf("removing the istio feature left its label: %v", ns.Labels)
	}

	// A tier change re-provisions the quota.
	ref = ns.Annotations[contract.WorkflowAnnotation]
	if err := alice.update(ctx, "ledger-dev", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "medium" }); err != nil {
		t.Fatal(err)
	}
	waitNewWorkflow(t, "ledger-dev", ref)
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "ledger-dev", Name: "nsprov-quota"}, quota); err != nil {
		t.Fatal(err)
	}
	if got := quota.Spec.Hard["requests.cpu"]; got.String() != "4" {
		t.Errorf("quota after the tier change: requests.cpu = %s, want 4", got.String())
	}
}

func TestReprovisionRunsThePlanAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("again-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "again-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	ref := ns.Annotations[contract.WorkflowAnnotation]
	// Someone deletes the quota; asking again restores it.
	q := &corev1.ResourceQuota{}
	q.Namespace, q.Name = "again-dev", "nsprov-quota"
	if err := env.Client.Delete(ctx, q); err != nil {
		t.Fatal(err)
	}
	// A RoleBinding an earlier plan applied, under a name the policy no
	// longer uses, goes; one nsprov did not make stays.
	stale := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "again-dev", Name: "nsprov-team-admin", Labels: map[string]string{
			contract.ManagedByLabel: "nsprov", contract.RoleBindingLabel: "nsprov-team-admin",
		}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "team-payments"}},
	}
	foreign := stale.DeepCopy()
	foreign.Name, foreign.Labels = "ci-deployer", nil
	for _, rb := range []*rbacv1.RoleBinding{stale, foreign} {
		if err := env.Client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	if err := alice.update(ctx, "again-dev", func(ns *corev1.Namespace) { ns.Annotations[contract.ReprovisionAnnotation] = "1" }); err != nil {
		t.Fatal(err)
	}
	waitNewWorkflow(t, "again-dev", ref)
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(q), q); err != nil {
		t.Errorf("reprovisioning did not restore the quota: %v", err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(stale), &rbacv1.RoleBinding{}); !apierrors.IsNotFound(err) {
		t.Errorf("the RoleBinding the plan no longer names: %v, want it deleted", err)
	}
	for _, name := range []string{"nsprov-team-edit", "ci-deployer"} {
		rb := &rbacv1.RoleBinding{}
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "again-dev", Name: name}, rb); err != nil {
			t.Errorf("RoleBinding %s: %v, want it kept", name, err)
		}
		if name == "nsprov-team-edit" && rb.Labels[contract.RoleBindingLabel] != name {
			t.Errorf("RoleBinding %s labels %v, want %s=%s", name, rb.Labels, contract.RoleBindingLabel, name)
		}
	}
}

// TestPolicyChangeReplans: when the policy changes, existing namespaces are
// provisioned again with their new plan, without anyone touching them.
func TestPolicyChangeReplans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("replan-dev", "payments", "development", map[string]string{tierKey: "micro"})); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "replan-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	quota := &corev1.ResourceQuota{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "replan-dev", Name: "nsprov-quota"}, quota); err != nil {
		t.Fatal(err)
	}
	if got := quota.Spec.Hard["requests.cpu"]; got.String() != "1" {
		t.Fatalf("micro quota requests.cpu = %s, want 1", got.String())
	}

	// The platform team raises the micro tier's CPU (no other test reads it).
	tiers := filepath.Join(policyDir, "config", "tiers.yaml")
	orig, err := os.ReadFile(tiers)
	if err != nil {
		t.Fatal(err)
	}
	raised := strings.Replace(string(orig), `quota: {cpu: "1", memory: 2Gi`, `quota: {cpu: 1500m, memory: 2Gi`, 1)
	if raised == string(orig) {
		t.Fatal("tiers.yaml has no micro quota of 1 CPU to raise")
	}
	if err := writeAtomic(tiers, []byte(raised)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := writeAtomic(tiers, orig); err != nil {
			t.Error(err)
		}
	})
	waitNewWorkflow(t, "replan-dev", ns.Annotations[contract.WorkflowAnnotation])
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(quota), quota); err != nil {
		t.Fatal(err)
	}
	if got := quota.Spec.Hard["requests.cpu"]; got.String() != "1500m" {
		t.Errorf("after the policy change: requests.cpu = %s, want 1500m", got.String())
	}
}

// TestMissingTemplate runs alone (not parallel): it removes the
// WorkflowTemplate every other provisioning test needs, then puts it back.
func TestMissingTemplate(t *testing.T) {
	ctx := context.Background()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := LoadWorkflowTemplate(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, tmpl.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	restored := false
	defer func() {
		if !restored {
			_ = env.Client.Create(ctx, tmpl.DeepCopy())
		}
	}()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("waiting-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "waiting-dev", corev1.ConditionFalse, contract.ReasonTemplateNotFound)
	for _, c := range ns.Status.Conditions {
		if c.Type == contract.ConditionProvisioned && !strings.Contains(c.Message, "argo/nsprov-provision is not installed") {
			t.Errorf("condition message %q does not name the template", c.Message)
		}
	}
	wantEvents(t, "waiting-dev", "ProvisioningTemplateNotFound")
	if err := env.Client.Create(ctx, tmpl.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	restored = true
	waitCondition(t, "waiting-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
}

func wantEvents(t *testing.T, namespace string, reasons ...string) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("events %v on %s", reasons, namespace), func() error {
		list := &eventsv1.EventList{}
		if err := env.Client.List(context.Background(), list); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, e := range list.Items {
			if e.Regarding.Kind == "Namespace" && e.Regarding.Name == namespace {
				seen[e.Reason] = true
			}
		}
		for _, r := range reasons {
			if !seen[r] {
				return fmt.Errorf("no %s event; have %v", r, seen)
			}
		}
		return nil
	})
}

// TestFailingStep blocks the quota of one namespace with a
// ValidatingAdmissionPolicy, so the workflow's quota step fails; the
// namespace reports Failed with kubectl's message.
func TestFailingStep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	blockQuotas(t, "broken-dev")
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("broken-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ns := waitCondition(t, "broken-dev", corev1.ConditionFalse, contract.ReasonFailed)
	for _, c := range ns.Status.Conditions {
		if c.Type == contract.ConditionProvisioned && (!strings.Contains(c.Message, "quota") || !strings.Contains(c.Message, "quotas are blocked here by the test")) {
			t.Errorf("condition message %q does not carry the failed step and kubectl's message", c.Message)
		}
	}
	wantEvents(t, "broken-dev", "ProvisioningStarted", "ProvisioningFailed")
}

// TestRacingControllersCreateOneWorkflow starts a second controller, as a
// restarted or extra replica would be, while a namespace is provisioned:
// there is still exactly one Workflow for it.
func TestRacingControllersCreateOneWorkflow(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := env.StartController(ctx); err != nil {
		t.Fatal(err)
	}
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("race-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, "race-dev", corev1.ConditionTrue, contract.ReasonSucceeded)
	cancel() // the second controller goes away mid-life, as in a restart
	list := &wfv1.WorkflowList{}
	if err := env.Client.List(context.Background(), list, client.InNamespace(ArgoNamespace), client.MatchingLabels{contract.NamespaceLabel: "race-dev"}); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		var names []string
		for _, w := range list.Items {
			names = append(names, w.Name)
		}
		t.Errorf("%d workflows for race-dev, want 1: %v", len(list.Items), names)
	}
}

// TestOnlyTheLastWorkflowsAreKept re-provisions one namespace more often than
// the controller keeps Workflows: the oldest go, the newest stay.
func TestOnlyTheLastWorkflowsAreKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("history-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	ref := waitCondition(t, "history-dev", corev1.ConditionTrue, contract.ReasonSucceeded).Annotations[contract.WorkflowAnnotation]
	for i := 1; i <= 6; i++ {
		if err := alice.update(ctx, "history-dev", func(ns *corev1.Namespace) {
			ns.Annotations[contract.ReprovisionAnnotation] = fmt.Sprint(i)
		}); err != nil {
			t.Fatal(err)
		}
		ref = waitNewWorkflow(t, "history-dev", ref).Annotations[contract.WorkflowAnnotation]
	}
	Eventually(t, 30*time.Second, "pruning to 5 workflows", func() error {
		list := &wfv1.WorkflowList{}
		if err := env.Client.List(ctx, list, client.InNamespace(ArgoNamespace), client.MatchingLabels{contract.NamespaceLabel: "history-dev"}); err != nil {
			return err
		}
		current := false
		for _, w := range list.Items {
			current = current || ArgoNamespace+"/"+w.Name == ref
		}
		if len(list.Items) != 5 || !current {
			return fmt.Errorf("%d workflows (current kept: %v), want 5 including the current one", len(list.Items), current)
		}
		return nil
	})
}

// TestYAMLLookingTeams: teams whose names YAML reads as a boolean, a number
// or null are provisioned end to end, and every object names the team as a
// string (the team network policy selects it).
func TestYAMLLookingTeams(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, team := range []string{"true", "123", "null"} {
		t.Run(team, func(t *testing.T) {
			name := team + "-dev"
			u := newUser(t, "yaml-"+team, "team-"+team)
			if err := u.client.Create(ctx, request(name, team, "development", map[string]string{netpolKey: "team"})); err != nil {
				t.Fatal(err)
			}
			ns := waitCondition(t, name, corev1.ConditionTrue, contract.ReasonSucceeded)
			if ns.Labels[contract.TeamLabel] != team {
				t.Errorf("team label %q, want %q", ns.Labels[contract.TeamLabel], team)
			}
			for _, obj := range []client.Object{&corev1.ResourceQuota{}, &corev1.LimitRange{}} {
				key := client.ObjectKey{Namespace: name, Name: "nsprov-quota"}
				if _, ok := obj.(*corev1.LimitRange); ok {
					key.Name = "nsprov-limits"
				}
				if err := env.Client.Get(ctx, key, obj); err != nil {
					t.Errorf("%s: %v", key.Name, err)
				}
			}
			rb := &rbacv1.RoleBinding{}
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: name, Name: "nsprov-team-edit"}, rb); err != nil {
				t.Fatal(err)
			}
			if len(rb.Subjects) != 1 || rb.Subjects[0].Name != "team-"+team {
				t.Errorf("role binding subjects %+v, want group team-%s", rb.Subjects, team)
			}
			nps := networkPolicies(t, name)
			for _, want := range []string{"nsprov-default-deny", "nsprov-allow-dns", "nsprov-allow-same-namespace", "nsprov-allow-team"} {
				if _, ok := nps[want]; !ok {
					t.Errorf("network policy %s missing; have %v", want, policyNames(nps))
				}
			}
			if np, ok := nps["nsprov-allow-team"]; ok {
				if got := np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels[contract.TeamLabel]; got != team {
					t.Errorf("the team policy selects team %q, want %q", got, team)
				}
			}
		})
	}
}
