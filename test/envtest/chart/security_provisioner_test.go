package chart

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/trigger"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// argoUser may create Workflows and WorkflowTemplates in the Argo namespace
// (as Argo's own edit role allows), and nothing nsprov grants.
var argoUser = crenvtest.User{Name: "argo-user", Groups: []string{"argo-users"}}

// installSecured installs the chart with the self-managed values (its RBAC
// and admission policies) as it is while nsprov is down: without its webhook
// configurations, so what holds is what the API server enforces by itself.
// argoUser gets write access to Workflows and WorkflowTemplates in the Argo
// namespace.
func installSecured(ctx context.Context, t *testing.T) {
	t.Helper()
	values, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "ci", "self-managed-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	apiServer(t)
	var objs []*unstructured.Unstructured
	for _, o := range render(t, values) {
		if strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
			if err := admin.Delete(ctx, o.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			continue
		}
		objs = append(objs, o)
	}
	install(ctx, t, objs, false)
	apply(ctx, t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "argo-user", Namespace: "argo"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"argoproj.io"},
			Resources: []string{"workflows", "workflowtemplates", "cronworkflows"},
			Verbs:     []string{"get", "list", "create", "update", "patch", "delete"},
		}},
	})
	apply(ctx, t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "argo-user", Namespace: "argo"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "argo-user"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "argo-users"}},
	})
	// The policies take a moment to be loaded by the API server.
	time.Sleep(2 * time.Second)
}

// apply creates obj as admin, or leaves the existing one.
func apply(ctx context.Context, t *testing.T, obj client.Object) {
	t.Helper()
	if err := admin.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// clientAs is a client authenticated as u.
func clientAs(t *testing.T, u crenvtest.User) client.Client {
	t.Helper()
	c, err := client.New(user(t, u.Name, u.Groups...), client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// teamNamespace creates a namespace as nsprov's webhook leaves it: with the
// team label nsprov mirrors.
func teamNamespace(ctx context.Context, t *testing.T, name, team string) {
	t.Helper()
	apply(ctx, t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{contract.TeamLabel: team}}})
}

func roleBinding(ns, name, clusterRole, group string, labels map[string]string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: group}},
	}
}

var nsprovLabels = map[string]string{contract.ManagedByLabel: contract.ManagedBy, contract.RoleBindingLabel: "nsprov-team-edit"}

// wantDenied fails unless err is the API server's refusal whose message
// contains want.
func wantDenied(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("allowed, want a refusal mentioning %q", want)
	}
	if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
		t.Fatalf("got %v, want a refusal mentioning %q", err, want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("refused with %q, want it to mention %q", err.Error(), want)
	}
}

// TestProvisionerConfined acts as the provisioner's service account with
// the chart's RBAC and admission policies: what the plan applies is allowed
// in a namespace nsprov provisions, and every way to use the identity
// against the cluster is refused by the API server, with nsprov not running.
func TestProvisionerConfined(t *testing.T) {
	ctx := context.Background()
	installSecured(ctx, t)
	teamNamespace(ctx, t, "sec-payments", "payments")
	teamNamespace(ctx, t, "sec-web", "web")
	apply(ctx, t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sec-bare"}})
	apply(ctx, t, roleBinding("sec-payments", "team-own-binding", "view", "team-payments", nil))
	prov := clientAs(t, provisionerSA)

	t.Run("the plan's objects are allowed", func(t *testing.T) {
		rb := roleBinding("sec-payments", "nsprov-team-edit", "edit", "team-payments", nsprovLabels)
		if err := prov.Create(ctx, rb); err != nil {
			t.Fatalf("creating the team's RoleBinding: %v", err)
		}
		managed := map[string]string{contract.ManagedByLabel: contract.ManagedBy}
		quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-quota", Namespace: "sec-payments", Labels: managed}}
		if err := prov.Create(ctx, quota); err != nil {
			t.Fatalf("creating the quota: %v", err)
		}
		np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-default-deny", Namespace: "sec-payments", Labels: managed}}
		if err := prov.Create(ctx, np); err != nil {
			t.Fatalf("creating a network policy: %v", err)
		}
		if err := prov.Delete(ctx, np); err != nil {
			t.Fatalf("deleting a network policy: %v", err)
		}
		patch := []byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`)
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sec-payments"}}
		if err := prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatalf("labelling the namespace for a feature: %v", err)
		}
		patch = []byte(`{"metadata":{"labels":{"istio-injection":null}}}`)
		if err := prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, patch)); err != nil {
			t.Fatalf("removing a feature's label: %v", err)
		}
		if err := prov.Delete(ctx, rb); err != nil {
			t.Fatalf("deleting nsprov's RoleBinding: %v", err)
		}
	})

	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"a RoleBinding in kube-system", func() error {
			return prov.Create(ctx, roleBinding("kube-system", "nsprov-team-edit", "edit", "team-payments", nsprovLabels))
		}, "only into namespaces nsprov provisions"},
		{"a quota in a namespace nsprov does not provision", func() error {
			return prov.Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-quota", Namespace: "sec-bare", Labels: nsprovLabels}})
		}, "only into namespaces nsprov provisions"},
		{"a binding of cluster-admin", func() error {
			return prov.Create(ctx, roleBinding("sec-payments", "nsprov-team-edit", "cluster-admin", "team-payments", nsprovLabels))
		}, "attempting to grant RBAC permissions not currently held"},
		{"a binding of another team's group", func() error {
			return prov.Create(ctx, roleBinding("sec-payments", "nsprov-team-edit", "edit", "team-web", nsprovLabels))
		}, "team-payments"},
		{"a binding of a user", func() error {
			rb := roleBinding("sec-payments", "nsprov-team-edit", "edit", "team-payments", nsprovLabels)
			rb.Subjects = append(rb.Subjects, rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: "User", Name: "mallory"})
			return prov.Create(ctx, rb)
		}, "team-payments"},
		{"a label patch of kube-system", func() error {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system"}}
			return prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"istio-injection":"enabled"}}}`)))
		}, "only namespaces nsprov provisions"},
		{"a label the plan does not own", func() error {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sec-payments"}}
			return prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"pod-security.kubernetes.io/enforce":"privileged"}}}`)))
		}, "only the labels the plan owns"},
		{"a change of the team label", func() error {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sec-payments"}}
			return prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"nsprov.io/team":"web"}}}`)))
		}, "only the labels the plan owns"},
		{"an annotation", func() error {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "sec-payments"}}
			return prov.Patch(ctx, ns, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"scheduler.alpha.kubernetes.io/node-selector":"a=b"}}}`)))
		}, "only the labels the plan owns"},
		{"a deletion of a RoleBinding nsprov does not own", func() error {
			return prov.Delete(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "team-own-binding", Namespace: "sec-payments"}})
		}, "only objects nsprov applied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantDenied(t, tc.do(), tc.want) })
	}
}

// TestProvisioningLaunch: only nsprov's controller starts the provisioning
// template, and no one else's Workflow runs as the provisioner.
func TestProvisioningLaunch(t *testing.T) {
	ctx := context.Background()
	installSecured(ctx, t)
	user := clientAs(t, argoUser)
	nsprov := clientAs(t, nsprovSA)

	fromTemplate := func(name string) *wfv1.Workflow {
		return &wfv1.Workflow{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "argo"},
			Spec: wfv1.WorkflowSpec{
				WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: trigger.TemplateName},
				Arguments:           wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "namespace", Value: wfv1.AnyStringPtr("kube-system")}}},
			},
		}
	}
	inline := func(name string, mutate func(*wfv1.WorkflowSpec)) *wfv1.Workflow {
		wf := &wfv1.Workflow{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "argo"},
			Spec: wfv1.WorkflowSpec{
				Entrypoint: "main",
				Templates: []wfv1.Template{{Name: "main", Resource: &wfv1.ResourceTemplate{
					Action: "create", Manifest: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
				}}},
			},
		}
		mutate(&wf.Spec)
		return wf
	}

	// nsprov's own launch, and an ordinary Workflow of the Argo user.
	if err := nsprov.Create(ctx, fromTemplate("sec-by-nsprov")); err != nil {
		t.Fatalf("nsprov starting the template: %v", err)
	}
	if err := user.Create(ctx, inline("sec-ordinary", func(*wfv1.WorkflowSpec) {})); err != nil {
		t.Fatalf("an ordinary Workflow: %v", err)
	}
	// Argo's controller (here the admin) writes the status of nsprov's Workflow.
	started := &wfv1.Workflow{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: "argo", Name: "sec-by-nsprov"}, started); err != nil {
		t.Fatal(err)
	}
	started.Status.Phase = wfv1.WorkflowRunning
	if err := user.Update(ctx, started); err != nil {
		t.Fatalf("an update that leaves the spec alone: %v", err)
	}

	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"the template submitted by an Argo user", func() error {
			return user.Create(ctx, fromTemplate("sec-by-user"))
		}, "only nsprov"},
		{"the arguments of nsprov's Workflow changed by an Argo user", func() error {
			wf := &wfv1.Workflow{}
			if err := user.Get(ctx, client.ObjectKey{Namespace: "argo", Name: "sec-by-nsprov"}, wf); err != nil {
				return err
			}
			wf.Spec.Arguments.Parameters[0].Value = wfv1.AnyStringPtr("default")
			return user.Update(ctx, wf)
		}, "only nsprov"},
		{"a cluster-scoped template of the same name", func() error {
			wf := fromTemplate("sec-cluster-scope")
			wf.Spec.WorkflowTemplateRef.ClusterScope = true
			return user.Create(ctx, wf)
		}, "only nsprov"},
		{"an inline copy running as the provisioner", func() error {
			return user.Create(ctx, inline("sec-inline", func(s *wfv1.WorkflowSpec) { s.ServiceAccountName = "nsprov-provisioner" }))
		}, "nsprov-provisioner"},
		{"a step running as the provisioner", func() error {
			return user.Create(ctx, inline("sec-step", func(s *wfv1.WorkflowSpec) { s.Templates[0].ServiceAccountName = "nsprov-provisioner" }))
		}, "nsprov-provisioner"},
		{"an executor running as the provisioner", func() error {
			return user.Create(ctx, inline("sec-executor", func(s *wfv1.WorkflowSpec) {
				s.Executor = &wfv1.ExecutorConfig{ServiceAccountName: "nsprov-provisioner"}
			}))
		}, "nsprov-provisioner"},
		{"a pod spec patch choosing the service account", func() error {
			return user.Create(ctx, inline("sec-patch", func(s *wfv1.WorkflowSpec) {
				s.PodSpecPatch = `{"serviceAccountName": "nsprov-provision\u0065r"}`
			}))
		}, "serviceAccount"},
		{"a template running as the provisioner", func() error {
			return user.Create(ctx, &wfv1.WorkflowTemplate{
				ObjectMeta: metav1.ObjectMeta{Name: "sec-copy", Namespace: "argo"},
				Spec:       inline("x", func(s *wfv1.WorkflowSpec) { s.ServiceAccountName = "nsprov-provisioner" }).Spec,
			})
		}, "nsprov-provisioner"},
		{"the provisioning template changed by an Argo user", func() error {
			tpl := &wfv1.WorkflowTemplate{}
			if err := user.Get(ctx, client.ObjectKey{Namespace: "argo", Name: trigger.TemplateName}, tpl); err != nil {
				return err
			}
			tpl.Spec.Templates[0].DAG.Tasks = tpl.Spec.Templates[0].DAG.Tasks[:1]
			return user.Update(ctx, tpl)
		}, "cluster administrator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantDenied(t, tc.do(), tc.want) })
	}
}

// TestProvisionerValuesMatchPolicy: the chart's values name the ClusterRoles,
// groups and namespace labels the embedded policy data makes the plan use,
// so the API server allows every plan and nothing beyond.
func TestProvisionerValuesMatchPolicy(t *testing.T) {
	values, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	prov := values["provisioner"].(map[string]any)
	strs := func(v any) []string {
		var out []string
		list, _ := v.([]any)
		for _, s := range list {
			out = append(out, s.(string))
		}
		sort.Strings(out)
		return slices.Compact(out)
	}
	var access struct {
		Access struct {
			TeamRoleBindings []struct {
				ClusterRole string `json:"cluster_role"`
				Group       string `json:"group"`
			} `json:"team_role_bindings"`
		} `json:"access"`
	}
	var features struct {
		Features map[string]struct {
			NamespaceLabels map[string]string `json:"namespace_labels"`
		} `json:"features"`
	}
	for file, into := range map[string]any{"config/access.yaml": &access, "config/features.yaml": &features} {
		b, err := fs.ReadFile(policies.Bundle, file)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, into); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
	}
	var roles, groups, labels []string
	for _, b := range access.Access.TeamRoleBindings {
		roles = append(roles, b.ClusterRole)
		groups = append(groups, b.Group)
	}
	for _, f := range features.Features {
		for k := range f.NamespaceLabels {
			labels = append(labels, k)
		}
	}
	for _, c := range []struct {
		value  string
		policy []string
	}{{"clusterRoles", roles}, {"teamGroups", groups}, {"namespaceLabels", labels}} {
		sort.Strings(c.policy)
		want := slices.Compact(c.policy)
		if got := strs(prov[c.value]); !slices.Equal(got, want) {
			t.Errorf("provisioner.%s = %v, the policy data uses %v", c.value, got, want)
		}
	}
}

// yamlTeams are valid team names that YAML reads as something else than a
// string when they are not quoted.
var yamlTeams = []string{"true", "no", "on", "null", "123", "1e3", "0x1f"}

// TestProvisionYAMLLookingTeams runs the provisioning template, with the
// parameters nsprov's controller passes, for teams and namespaces whose
// names YAML would read as booleans, numbers or null: the steps run as the
// provisioner with the chart's RBAC and admission policies on Argo's own
// workflow-controller and argoexec, and every object carries the names as
// strings.
func TestProvisionYAMLLookingTeams(t *testing.T) {
	ctx := context.Background()
	installSecured(ctx, t)
	argo := startArgo(ctx, t)
	defer argo.Stop()
	nsprov := clientAs(t, nsprovSA)
	for _, team := range yamlTeams {
		t.Run(team, func(t *testing.T) {
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: team, Labels: map[string]string{contract.TeamLabel: team}}}
			apply(ctx, t, ns)
			if err := admin.Get(ctx, client.ObjectKeyFromObject(ns), ns); err != nil {
				t.Fatal(err)
			}
			plan := &contract.Plan{
				Namespace: team, Team: team, Environment: "development", Tier: "small",
				Quota:                    contract.Quota{CPU: "2", Memory: "4Gi", Storage: "20Gi"},
				ContainerDefaults:        contract.Resources{CPU: "500m", Memory: "512Mi"},
				ContainerDefaultRequests: contract.Resources{CPU: "100m", Memory: "128Mi"},
				RoleBindings:             []contract.RoleBinding{{Name: "nsprov-team-edit", ClusterRole: "edit", Group: "team-" + team}},
				NetworkPolicy:            contract.NetworkPolicy{Mode: "team", DefaultDeny: true, AllowDNS: true, AllowSameNamespace: true, AllowTeam: true},
				NamespaceLabels:          map[string]*string{"istio-injection": nil},
			}
			wf := trigger.NewWorkflow(ns, plan, trigger.RunKey(trigger.Hash(trigger.Parameters(plan)), "test", ""), 1, trigger.Options{ArgoNamespace: "argo"})
			if err := nsprov.Create(ctx, wf); err != nil {
				t.Fatalf("nsprov creating the Workflow: %v", err)
			}
			envtest.Eventually(t, 3*time.Minute, "the Workflow of team "+team+" ends", func() error {
				if err := admin.Get(ctx, client.ObjectKeyFromObject(wf), wf); err != nil {
					return err
				}
				if !wf.Status.Fulfilled() {
					return fmt.Errorf("phase %q, progress %s", wf.Status.Phase, wf.Status.Progress)
				}
				return nil
			})
			if wf.Status.Phase != wfv1.WorkflowSucceeded {
				var msgs []string
				for _, n := range wf.Status.Nodes {
					if n.Message != "" {
						msgs = append(msgs, n.DisplayName+": "+n.Message)
					}
				}
				sort.Strings(msgs)
				t.Fatalf("workflow %s: %s\n%s", wf.Status.Phase, wf.Status.Message, strings.Join(msgs, "\n"))
			}
			checkTeamObjects(ctx, t, team)
		})
	}
}

func checkTeamObjects(ctx context.Context, t *testing.T, team string) {
	t.Helper()
	np := &networkingv1.NetworkPolicy{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: team, Name: "nsprov-allow-team"}, np); err != nil {
		t.Fatalf("the allow-team NetworkPolicy: %v", err)
	}
	if got := np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels[contract.TeamLabel]; got != team {
		t.Errorf("the allow-team NetworkPolicy selects team %q, want %q", got, team)
	}
	rb := &rbacv1.RoleBinding{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: team, Name: "nsprov-team-edit"}, rb); err != nil {
		t.Fatalf("the team's RoleBinding: %v", err)
	}
	if len(rb.Subjects) != 1 || rb.Subjects[0].Name != "team-"+team {
		t.Errorf("the RoleBinding binds %+v, want group team-%s", rb.Subjects, team)
	}
	for _, obj := range []client.Object{&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-quota"}}, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-limits"}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-default-deny"}}, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "nsprov-allow-dns"}}} {
		if err := admin.Get(ctx, client.ObjectKey{Namespace: team, Name: obj.GetName()}, obj); err != nil {
			t.Errorf("%s %s: %v", fmt.Sprintf("%T", obj), obj.GetName(), err)
		}
	}
	quota := &corev1.ResourceQuota{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: team, Name: "nsprov-quota"}, quota); err == nil && quota.Labels[contract.TierLabel] != "small" {
		t.Errorf("the quota's tier label is %q", quota.Labels[contract.TierLabel])
	}
}

// TestProvisioningPoliciesRendered: the admission policies follow
// provisioner.admissionPolicies and argo.namespace, each with its binding.
func TestProvisioningPoliciesRendered(t *testing.T) {
	policies := []string{"nsprov-provisioning-launch", "nsprov-provisioner"}
	off := render(t, map[string]any{"provisioner": map[string]any{"admissionPolicies": false}})
	for _, o := range off {
		if strings.HasPrefix(o.GetKind(), "ValidatingAdmissionPolicy") && slices.Contains(policies, o.GetName()) {
			t.Errorf("admissionPolicies false renders %s %s", o.GetKind(), o.GetName())
		}
	}
	objs := render(t, map[string]any{"argo": map[string]any{"namespace": "workflows"}})
	for _, name := range policies {
		find(t, objs, "ValidatingAdmissionPolicy", name)
		find(t, objs, "ValidatingAdmissionPolicyBinding", name)
	}
	launch, _ := yaml.Marshal(find(t, objs, "ValidatingAdmissionPolicy", "nsprov-provisioning-launch").Object)
	if !strings.Contains(string(launch), "kubernetes.io/metadata.name: workflows") {
		t.Errorf("the launch policy does not select the Argo namespace workflows:\n%s", launch)
	}
	prov, _ := yaml.Marshal(find(t, objs, "ValidatingAdmissionPolicy", "nsprov-provisioner").Object)
	if !strings.Contains(string(prov), "system:serviceaccount:workflows:nsprov-provisioner") {
		t.Errorf("the provisioner policy does not match the provisioner of the Argo namespace workflows:\n%s", prov)
	}
}
