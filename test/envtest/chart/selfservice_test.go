package chart

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// requesterPolicy is the ValidatingAdmissionPolicy (and binding) that
// limits the namespace updates of requesters.
const requesterPolicy = "nsprov-namespace-requester"

// TestSelfService installs the chart's RBAC and admission policies, with no
// nsprov running, and shows that the API server alone lets a member of a
// namespace's team change that namespace's request, and refuses every other
// namespace update by a requester.
func TestSelfService(t *testing.T) {
	ctx := context.Background()
	values, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "ci", "self-managed-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The chart's RBAC and admission policies, and no webhook: nsprov is
	// down, and what follows is what the API server enforces alone. (The
	// webhook configurations an earlier test left point at no server; a
	// later test installs them again.)
	apiServer(t)
	var objs []*unstructured.Unstructured
	for _, o := range render(t, values) {
		switch o.GetKind() {
		case "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding":
			objs = append(objs, o)
		}
	}
	deleteWebhooks(ctx, t)
	install(ctx, t, objs, false)

	// Namespaces as nsprov stores them: request annotations, requested-by and
	// the mirrored labels.
	stored := func(name, team string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Annotations: map[string]string{
				"nsprov.io/team": team, "nsprov.io/environment": "development",
				"nsprov.io/tier": "small", "nsprov.io/requested-by": "someone",
			},
			Labels: map[string]string{
				"nsprov.io/team": team, "nsprov.io/environment": "development", "nsprov.io/tier": "small",
			},
		}}
	}
	for _, ns := range []*corev1.Namespace{stored("selfservice-dev", "payments"), stored("selfservice-web-dev", "web")} {
		if err := admin.Create(ctx, ns); err != nil {
			t.Fatalf("creating %s: %v", ns.Name, err)
		}
	}

	aliceCfg := user(t, "alice", "team-payments")
	alice, err := client.New(aliceCfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	bobCfg := user(t, "bob", "team-web")
	bob, err := client.New(bobCfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	kubectl := kubectlAs(t, "alice", "team-payments")

	// patch changes the namespace name as c, with a merge patch as kubectl
	// annotate and label send.
	patch := func(c client.Client, name string, change func(*corev1.Namespace), opts ...client.PatchOption) error {
		ns := &corev1.Namespace{}
		if err := admin.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
			t.Fatalf("get %s: %v", name, err)
		}
		base := ns.DeepCopy()
		if ns.Annotations == nil {
			ns.Annotations = map[string]string{}
		}
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		change(ns)
		return c.Patch(ctx, ns, client.MergeFrom(base), opts...)
	}

	// The policy and its binding take effect shortly after they are created
	// or changed: wait until the API server answers with these values (a dry
	// run: nothing is written meanwhile). bob's group is a requester group
	// only in these values, so his refusal tells that a policy an earlier
	// test installed with other groups is no longer the one in effect.
	deadline := time.Now().Add(time.Minute)
	for {
		err := patch(alice, "default", func(ns *corev1.Namespace) { ns.Labels["owner"] = "alice" }, client.DryRunAll)
		bobErr := patch(bob, "default", func(ns *corev1.Namespace) { ns.Labels["owner"] = "bob" }, client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), requesterPolicy) && bobErr != nil && strings.Contains(bobErr.Error(), requesterPolicy) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("updates of default are not refused by %s: alice: %v; bob: %v", requesterPolicy, err, bobErr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	t.Run("alice changes her tier with kubectl annotate", func(t *testing.T) {
		if out, err := kubectl("annotate", "--overwrite", "namespace", "selfservice-dev", "nsprov.io/tier=medium"); err != nil {
			t.Fatalf("kubectl annotate: %v\n%s", err, out)
		}
		ns := &corev1.Namespace{}
		if err := admin.Get(ctx, client.ObjectKey{Name: "selfservice-dev"}, ns); err != nil {
			t.Fatal(err)
		}
		if got := ns.Annotations["nsprov.io/tier"]; got != "medium" {
			t.Errorf("tier = %q, want medium", got)
		}
	})
	t.Run("alice changes network policy, features and the mirrored tier label", func(t *testing.T) {
		err := patch(alice, "selfservice-dev", func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/network-policy"] = "team"
			ns.Annotations["nsprov.io/features"] = "istio"
			ns.Annotations["nsprov.io/tier"] = "micro"
			ns.Labels["nsprov.io/tier"] = "micro"
			ns.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
			// What nsprov's mutating webhook adds to a changed request.
			ns.Annotations["nsprov.io/provisioning"] = "Pending"
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Run("alice cancels her provisioning", func(t *testing.T) {
		if err := patch(alice, "selfservice-dev", func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/cancel"] = "true" }); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bob changes his own namespace", func(t *testing.T) {
		if err := patch(bob, "selfservice-web-dev", func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/tier"] = "medium" }); err != nil {
			t.Fatal(err)
		}
	})

	denied := []struct {
		name, ns, why string
		as            client.Client
		change        func(*corev1.Namespace)
	}{
		{"alice cannot change bob's namespace", "selfservice-web-dev", "team", alice, func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/tier"] = "micro" }},
		{"bob cannot change alice's namespace", "selfservice-dev", "team", bob, func(ns *corev1.Namespace) { ns.Annotations["nsprov.io/tier"] = "small" }},
		{"alice cannot change default", "default", "team", alice, func(ns *corev1.Namespace) { ns.Labels["owner"] = "alice" }},
		{"alice cannot change kube-system", "kube-system", "team", alice, func(ns *corev1.Namespace) {
			ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
		}},
		// Refused by this policy, or first by nsprov-namespace-metadata
		// (TestNsprovMetadataCannotBeForged), whichever the API server asks first.
		{"alice cannot make default look like hers", "default", "", alice, func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/team"] = "payments"
			ns.Labels["nsprov.io/team"] = "payments"
		}},
		{"alice cannot remove the team annotation", "selfservice-dev", "team and environment", alice, func(ns *corev1.Namespace) {
			delete(ns.Annotations, "nsprov.io/team")
		}},
		{"alice cannot change the environment", "selfservice-dev", "team and environment", alice, func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/environment"] = "production"
		}},
		{"alice cannot add a forbidden label", "selfservice-dev", "labels", alice, func(ns *corev1.Namespace) {
			ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
		}},
		{"alice cannot relabel her team", "selfservice-dev", "labels", alice, func(ns *corev1.Namespace) { ns.Labels["nsprov.io/team"] = "web" }},
		{"alice cannot set a node selector", "selfservice-dev", "annotations", alice, func(ns *corev1.Namespace) {
			ns.Annotations["scheduler.alpha.kubernetes.io/node-selector"] = "pool=gpu"
		}},
		{"alice cannot forge requested-by", "selfservice-dev", "annotations", alice, func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/requested-by"] = "alice"
		}},
		{"alice cannot fake a provisioning success", "selfservice-dev", "annotations", alice, func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/provisioning"] = "Succeeded"
		}},
		{"alice cannot forge the provisioned plan", "selfservice-dev", "annotations", alice, func(ns *corev1.Namespace) {
			ns.Annotations["nsprov.io/provisioned-plan"] = "forged"
		}},
		{"alice cannot add a finalizer", "selfservice-dev", "finalizers", alice, func(ns *corev1.Namespace) {
			ns.Finalizers = append(ns.Finalizers, "example.com/hold")
		}},
	}
	for _, tc := range denied {
		t.Run(tc.name, func(t *testing.T) {
			before := &corev1.Namespace{}
			if err := admin.Get(ctx, client.ObjectKey{Name: tc.ns}, before); err != nil {
				t.Fatal(err)
			}
			wantRefusedByPolicy(t, patch(tc.as, tc.ns, tc.change), tc.why)
			after := &corev1.Namespace{}
			if err := admin.Get(ctx, client.ObjectKey{Name: tc.ns}, after); err != nil {
				t.Fatal(err)
			}
			if after.ResourceVersion != before.ResourceVersion {
				t.Errorf("refused update changed %s", tc.ns)
			}
		})
	}

	t.Run("kubectl label of a forbidden label is refused", func(t *testing.T) {
		out, err := kubectl("label", "namespace", "selfservice-dev", "pod-security.kubernetes.io/enforce=privileged")
		if err == nil || !strings.Contains(out, requesterPolicy) {
			t.Fatalf("kubectl label: err %v, want a denial by %s\n%s", err, requesterPolicy, out)
		}
	})
	t.Run("requesters cannot delete namespaces", func(t *testing.T) {
		err := alice.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "selfservice-dev"}}, client.DryRunAll)
		if !apierrors.IsForbidden(err) {
			t.Fatalf("delete: %v, want Forbidden", err)
		}
	})
	t.Run("admins are not limited", func(t *testing.T) {
		if err := patch(admin, "kube-system", func(ns *corev1.Namespace) { ns.Labels["owner"] = "platform" }, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
	})
}

// wantRefusedByPolicy checks that err is a denial by the requester policy
// whose message names why; with an empty why, a denial by the requester or
// the metadata policy.
func wantRefusedByPolicy(t *testing.T, err error, why string) {
	t.Helper()
	if err == nil {
		t.Fatalf("update allowed, want refused by %s", requesterPolicy)
	}
	if why == "" {
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+requesterPolicy+"'") && !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+metadataPolicy+"'") {
			t.Fatalf("error is not a denial by %s or %s: %v", requesterPolicy, metadataPolicy, err)
		}
		return
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "ValidatingAdmissionPolicy '"+requesterPolicy+"'") {
		t.Fatalf("error is not a denial by %s: %v", requesterPolicy, err)
	}
	if !strings.Contains(err.Error(), why) {
		t.Errorf("denial does not mention %q: %v", why, err)
	}
}

// kubectlAs returns a function that runs the control plane's kubectl as
// the user name in groups and returns its combined output.
func kubectlAs(t *testing.T, name string, groups ...string) func(args ...string) (string, error) {
	t.Helper()
	apiServer(t)
	u, err := controlPlane.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	return func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(assets, "kubectl"), append([]string{"--kubeconfig", path}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
}

// deleteWebhooks deletes nsprov's webhook configurations an earlier test
// left: they point at no server. A later test installs them again.
func deleteWebhooks(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, w := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		w.SetName("nsprov")
		if err := admin.Delete(ctx, w); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}
