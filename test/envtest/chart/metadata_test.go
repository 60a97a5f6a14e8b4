package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// metadataPolicy is the ValidatingAdmissionPolicy (and binding) that keeps
// nsprov's metadata to nsprov's identities where its webhook cannot look.
const metadataPolicy = "nsprov-namespace-metadata"

// TestNsprovMetadataCannotBeForged installs the chart's RBAC and admission
// policies, with no nsprov running, and shows that the API server alone
// refuses, to anyone but nsprov, the doors nsprov's webhook does not watch:
// the namespaces/status and namespaces/finalize subresources (which take
// label and annotation changes), and the nsprov.io/ metadata of the
// namespaces nsprov never sees (webhook.exemptNamespaces, the release and
// the Argo namespace), on update and on create.
func TestNsprovMetadataCannotBeForged(t *testing.T) {
	ctx := context.Background()
	apiServer(t)
	values := map[string]any{
		"requester": map[string]any{"enabled": true, "groups": []any{"team-payments"}},
		"webhook":   map[string]any{"exemptNamespaces": []any{"kube-system", "kube-public", "kube-node-lease", "default", "platform-tools"}},
	}
	var objs []*unstructured.Unstructured
	for _, o := range render(t, values) {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			objs = append(objs, o)
		}
	}
	deleteWebhooks(ctx, t)
	install(ctx, t, objs, false)

	// mallory operates namespaces: she may create and update them and their
	// status and finalize subresources, as many operators may.
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "test-namespace-operator"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
			Verbs: []string{"get", "create", "update", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "test-namespace-operator"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "namespace-operators"}},
	}
	for _, o := range []client.Object{role, binding} {
		if err := admin.Create(ctx, o); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	mallory, err := kubernetes.NewForConfig(user(t, "mallory", "namespace-operators"))
	if err != nil {
		t.Fatal(err)
	}
	nsprov, err := kubernetes.NewForConfig(user(t, "system:serviceaccount:"+releaseNamespace+":nsprov", "system:serviceaccounts", "system:serviceaccounts:"+releaseNamespace))
	if err != nil {
		t.Fatal(err)
	}
	adminSet, err := kubernetes.NewForConfig(controlPlane.Config)
	if err != nil {
		t.Fatal(err)
	}

	team := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        "forgery-dev",
		Annotations: map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"},
		Labels:      map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small"},
	}}
	if err := admin.Create(ctx, team); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	get := func(name string) *corev1.Namespace {
		ns, err := adminSet.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ns
	}
	provisioned := corev1.NamespaceCondition{Type: "Provisioned", Status: corev1.ConditionTrue, Reason: "Succeeded", Message: "forged", LastTransitionTime: metav1.Now()}
	dry := metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}

	// The policy takes effect shortly after it is created or changed (an
	// earlier test may have installed it without platform-tools).
	deadline := time.Now().Add(time.Minute)
	for {
		ns := get("forgery-dev")
		ns.Labels["nsprov.io/team"] = "web"
		_, statusErr := mallory.CoreV1().Namespaces().UpdateStatus(ctx, ns, dry)
		tools := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "platform-tools", Labels: map[string]string{"nsprov.io/team": "payments"}}}
		_, createErr := adminSet.CoreV1().Namespaces().Create(ctx, tools, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if statusErr != nil && strings.Contains(statusErr.Error(), metadataPolicy) && createErr != nil && strings.Contains(createErr.Error(), metadataPolicy) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not take effect: a label change through namespaces/status: %v; creating platform-tools labelled: %v", metadataPolicy, statusErr, createErr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	type door func(*corev1.Namespace) (*corev1.Namespace, error)
	status := func(c *kubernetes.Clientset) door {
		return func(ns *corev1.Namespace) (*corev1.Namespace, error) {
			return c.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{})
		}
	}
	finalize := func(c *kubernetes.Clientset) door {
		return func(ns *corev1.Namespace) (*corev1.Namespace, error) {
			return c.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
		}
	}
	update := func(c *kubernetes.Clientset) door {
		return func(ns *corev1.Namespace) (*corev1.Namespace, error) {
			return c.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		}
	}
	tests := []struct {
		name    string
		ns      string
		through door
		change  func(*corev1.Namespace)
		allow   bool
		// check is what the stored namespace shows after an allowed change.
		check func(*corev1.Namespace) bool
	}{
		{"status: team label", "forgery-dev", status(mallory), func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "web" }, false, nil},
		{"status: workflow annotation", "forgery-dev", status(mallory), func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/workflow"] = "argo/forged" }, false, nil},
		{"status: Provisioned condition", "forgery-dev", status(mallory), func(ns *corev1.Namespace) {
			ns.Status.Conditions = append(ns.Status.Conditions, provisioned)
		}, false, nil},
		{"finalize: team label", "forgery-dev", finalize(mallory), func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "web" }, false, nil},
		{"finalize: requested-by annotation", "forgery-dev", finalize(mallory), func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/requested-by"] = "mallory" }, false, nil},
		{"status: other metadata still passes", "forgery-dev", status(mallory), func(ns *corev1.Namespace) { ns.Labels["example.com/owner"] = "ops" }, true,
			func(ns *corev1.Namespace) bool { return ns.Labels["example.com/owner"] == "ops" }},
		{"nsprov writes its condition", "forgery-dev", status(nsprov), func(ns *corev1.Namespace) {
			ns.Status.Conditions = append(ns.Status.Conditions, provisioned)
		}, true, func(ns *corev1.Namespace) bool {
			return len(ns.Status.Conditions) == 1 && ns.Status.Conditions[0].Type == "Provisioned"
		}},
		{"exempt namespace: team label on kube-system by an admin", "kube-system", update(adminSet), func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "payments" }, false, nil},
		{"exempt namespace: team label on default by an operator", "default", update(mallory), func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "payments" }, false, nil},
		{"exempt namespace: team label on argo through status", "argo", status(mallory), func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "payments" }, false, nil},
		{"exempt namespace: other labels pass", "kube-system", update(adminSet), func(ns *corev1.Namespace) { ns.Labels["example.com/owner"] = "platform" }, true,
			func(ns *corev1.Namespace) bool { return ns.Labels["example.com/owner"] == "platform" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := get(tc.ns)
			if before.Labels == nil {
				before.Labels = map[string]string{}
			}
			if before.Annotations == nil {
				before.Annotations = map[string]string{}
			}
			ns := before.DeepCopy()
			tc.change(ns)
			_, err := tc.through(ns)
			after := get(tc.ns)
			if tc.allow {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !tc.check(after) {
					t.Errorf("the change is not stored: %+v", after)
				}
				return
			}
			wantRefusedByMetadataPolicy(t, err)
			if after.ResourceVersion != before.ResourceVersion {
				t.Errorf("refused change changed %s", tc.ns)
			}
		})
	}

	// Creating a namespace nsprov never sees is no way around the rules.
	for _, name := range []string{"platform-tools", "argo", releaseNamespace} {
		t.Run("create "+name+" with a team label", func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"nsprov.io/team": "payments"}}}
			_, err := adminSet.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			wantRefusedByMetadataPolicy(t, err)
		})
	}
	t.Run("create platform-tools bare", func(t *testing.T) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "platform-tools"}}
		if _, err := mallory.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatal(err)
		}
	})
}

func wantRefusedByMetadataPolicy(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("allowed, want refused by %s", metadataPolicy)
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+metadataPolicy+"'") {
		t.Fatalf("error is not a denial by %s: %v", metadataPolicy, err)
	}
}
