package argorunner

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/trigger"
)

const (
	argoNS      = "argo"
	provisioner = "system:serviceaccount:argo:nsprov-provisioner"
)

var (
	k8s        client.Client
	kubectl    string
	kubeconfig string
	scheme     = runtime.NewScheme()
)

var templateFile = filepath.Join("..", "..", "..", "charts", "nsprov", "files", "provision-workflow.yaml")

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		// The repository's bin/k8s, as `make envtest-assets` builds it.
		assets = filepath.Join("..", "..", "..", "bin", "k8s")
	}
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		fmt.Fprintf(os.Stderr, "no kube-apiserver in %s: run `make envtest-assets` (or `make test`), or set KUBEBUILDER_ASSETS\n", assets)
		return 1
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/argoproj/argo-workflows/v3").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "locating the Argo module:", err)
		return 1
	}
	crds := filepath.Join(strings.TrimSpace(string(out)), "manifests", "base", "crds", "full")
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, wfv1.AddToScheme} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	env := &crenvtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   scheme,
		// Establishing the CRDs takes longer than the 10s default on a busy 2-core machine.
		CRDInstallOptions: crenvtest.CRDInstallOptions{Paths: []string{crds}, ErrorIfPathMissing: true, MaxTime: 2 * time.Minute},
	}
	defer func() { _ = env.Stop() }() // also after a Start that failed half-way
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the control plane:", err)
		return 1
	}
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	user, err := env.AddUser(crenvtest.User{Name: provisioner, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "argorunner-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubectl = filepath.Join(assets, "kubectl")

	ctx := context.Background()
	edit := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "edit"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"*"}}},
	}
	if err := k8s.Create(ctx, edit); err != nil && !apierrors.IsAlreadyExists(err) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for _, ns := range []string{argoNS, "argo-empty"} {
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// loadTemplate reads the chart's WorkflowTemplate spec.
func loadTemplate(t *testing.T, name string) *wfv1.WorkflowTemplate {
	t.Helper()
	data, err := os.ReadFile(templateFile)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: argoNS}}
	if err := yaml.UnmarshalStrict(data, &tmpl.Spec); err != nil {
		t.Fatalf("%s: %v", templateFile, err)
	}
	return tmpl
}

func install(t *testing.T, tmpl *wfv1.WorkflowTemplate) {
	t.Helper()
	if err := k8s.Create(context.Background(), tmpl); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// plan is what the policy's plan looks like for team payments.
func plan(ns, tier, network string, istio bool) map[string]any {
	quotas := map[string][3]string{"micro": {"1", "2Gi", "10Gi"}, "small": {"2", "4Gi", "20Gi"}}
	q := quotas[tier]
	isolated := network == "isolated"
	var from, to []any = []any{}, []any{}
	labels := map[string]any{"istio-injection": nil}
	if istio {
		from, to = []any{"istio-system"}, []any{"istio-system"}
		labels["istio-injection"] = "enabled"
	}
	return map[string]any{
		"namespace": ns, "team": "payments", "environment": "development", "tier": tier,
		"quota":                      map[string]any{"cpu": q[0], "memory": q[1], "storage": q[2]},
		"container_defaults":         map[string]any{"cpu": "500m", "memory": "512Mi"},
		"container_default_requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
		"role_bindings": []any{
			map[string]any{"name": "nsprov-team-edit", "cluster_role": "edit", "group": "team-payments"},
		},
		"network_policy": map[string]any{
			"default_deny": isolated, "allow_dns": isolated, "allow_same_namespace": isolated,
			"allow_team": network == "team", "allow_ingress_from": from, "allow_egress_to": to,
		},
		"namespace_labels": labels,
	}
}

func namespace(t *testing.T, name string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns
}

func newWorkflow(t *testing.T, ns *corev1.Namespace, p map[string]any, o trigger.Options) *wfv1.Workflow {
	t.Helper()
	if o.ArgoNamespace == "" {
		o.ArgoNamespace = argoNS
	}
	decoded, err := trigger.DecodePlan(p)
	if err != nil {
		t.Fatal(err)
	}
	wf := trigger.NewWorkflow(ns, decoded, "", o)
	if err := k8s.Create(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	return wf
}

// wait polls the Workflow until it completes.
func wait(t *testing.T, wf *wfv1.Workflow) *wfv1.Workflow {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		cur := &wfv1.Workflow{}
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(wf), cur); err != nil {
			t.Fatal(err)
		}
		if cur.Status.Phase.Completed() {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("workflow %s still %q: %s", wf.Name, cur.Status.Phase, cur.Status.Message)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func nodeByDisplayName(wf *wfv1.Workflow, name string) *wfv1.NodeStatus {
	return wf.Status.Nodes.FindByDisplayName(name)
}

func exists(t *testing.T, obj client.Object, ns, name string) bool {
	t.Helper()
	err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

var netpols = []string{"nsprov-default-deny", "nsprov-allow-dns", "nsprov-allow-same-namespace"}

func TestProvisionThroughStart(t *testing.T) {
	install(t, loadTemplate(t, trigger.TemplateName))
	ctx, cancel := context.WithCancel(context.Background())
	r := New(k8s, argoNS, kubectl, kubeconfig)
	r.RetryDelay = 10 * time.Millisecond
	done := make(chan error, 1)
	go func() { done <- r.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	ns := namespace(t, "payments-dev")

	// 1. isolated, small tier, no features.
	wf := wait(t, newWorkflow(t, ns, plan(ns.Name, "small", "isolated", false), trigger.Options{}))
	if wf.Status.Phase != wfv1.WorkflowSucceeded {
		t.Fatalf("phase %s: %s", wf.Status.Phase, wf.Status.Message)
	}
	if wf.Status.StartedAt.IsZero() || wf.Status.FinishedAt.IsZero() {
		t.Errorf("startedAt %v finishedAt %v", wf.Status.StartedAt, wf.Status.FinishedAt)
	}
	for _, name := range []string{"quota", "limits", "namespace-labels", "default-deny", "allow-dns", "allow-same-namespace", "prune-allow-team"} {
		n := nodeByDisplayName(wf, name)
		if n == nil || n.Phase != wfv1.NodeSucceeded {
			t.Errorf("node %s = %+v, want Succeeded", name, n)
		}
	}
	for _, name := range []string{"allow-team", "prune-default-deny", "allow-feature-ingress"} {
		n := nodeByDisplayName(wf, name)
		if n == nil || n.Phase != wfv1.NodeSkipped || !strings.Contains(n.Message, "evaluated false") {
			t.Errorf("node %s = %+v, want Skipped by when", name, n)
		}
	}
	rbacGroup := nodeByDisplayName(wf, "rbac")
	if rbacGroup == nil || rbacGroup.Type != wfv1.NodeTypeTaskGroup || rbacGroup.Phase != wfv1.NodeSucceeded || len(rbacGroup.Children) != 1 {
		t.Fatalf("rbac task group = %+v", rbacGroup)
	}
	// The prune step hangs from the binding's last attempt, as Argo links a
	// task to its dependencies' outbound nodes, not from the task group.
	prune := nodeByDisplayName(wf, "prune-role-bindings")
	if prune == nil || prune.Phase != wfv1.NodeSucceeded {
		t.Fatalf("prune-role-bindings = %+v, want Succeeded", prune)
	}
	item := wf.Status.Nodes[rbacGroup.Children[0]]
	if item.Type != wfv1.NodeTypeRetry || len(item.Children) == 0 {
		t.Fatalf("rbac item %+v, want a retry node with attempts", item)
	}
	if attempt := wf.Status.Nodes[item.Children[len(item.Children)-1]]; !slices.Contains(attempt.Children, prune.ID) {
		t.Errorf("prune-role-bindings is not a child of the rbac item's last attempt %s (children %v)", attempt.Name, attempt.Children)
	}
	if wf.Status.Progress == "" || !strings.HasPrefix(string(wf.Status.Progress), strings.Split(string(wf.Status.Progress), "/")[1]+"/") {
		t.Errorf("progress %q, want all pods succeeded", wf.Status.Progress)
	}

	quota := &corev1.ResourceQuota{}
	if !exists(t, quota, ns.Name, "nsprov-quota") {
		t.Fatal("no ResourceQuota nsprov-quota")
	}
	for res, want := range map[corev1.ResourceName]string{"requests.cpu": "2", "limits.cpu": "2", "requests.memory": "4Gi", "limits.memory": "4Gi", "requests.storage": "20Gi"} {
		if got := quota.Spec.Hard[res]; got.String() != want {
			t.Errorf("quota %s = %s, want %s", res, got.String(), want)
		}
	}
	if quota.Labels["nsprov.io/tier"] != "small" {
		t.Errorf("quota labels %v", quota.Labels)
	}
	lr := &corev1.LimitRange{}
	if !exists(t, lr, ns.Name, "nsprov-limits") {
		t.Fatal("no LimitRange nsprov-limits")
	}
	if got := lr.Spec.Limits[0].Default[corev1.ResourceCPU]; got.String() != "500m" {
		t.Errorf("limit range default cpu %s", got.String())
	}
	rb := &rbacv1.RoleBinding{}
	if !exists(t, rb, ns.Name, "nsprov-team-edit") {
		t.Fatal("no RoleBinding nsprov-team-edit")
	}
	if rb.RoleRef.Kind != "ClusterRole" || rb.RoleRef.Name != "edit" || len(rb.Subjects) != 1 || rb.Subjects[0].Kind != "Group" || rb.Subjects[0].Name != "team-payments" {
		t.Errorf("role binding %+v %+v", rb.RoleRef, rb.Subjects)
	}
	managed := []client.Object{quota, lr, rb}
	for _, name := range netpols {
		np := &networkingv1.NetworkPolicy{}
		if !exists(t, np, ns.Name, name) {
			t.Errorf("no NetworkPolicy %s", name)
			continue
		}
		managed = append(managed, np)
	}
	for _, obj := range managed {
		if obj.GetLabels()[contract.ManagedByLabel] != "nsprov" {
			t.Errorf("%T %s lacks %s=nsprov: %v", obj, obj.GetName(), contract.ManagedByLabel, obj.GetLabels())
		}
	}

	// 2. open network: the isolated policies are pruned.
	wf = wait(t, newWorkflow(t, ns, plan(ns.Name, "small", "open", false), trigger.Options{}))
	if wf.Status.Phase != wfv1.WorkflowSucceeded {
		t.Fatalf("phase %s: %s", wf.Status.Phase, wf.Status.Message)
	}
	for _, name := range netpols {
		if exists(t, &networkingv1.NetworkPolicy{}, ns.Name, name) {
			t.Errorf("NetworkPolicy %s was not pruned", name)
		}
	}
	if n := nodeByDisplayName(wf, "prune-default-deny"); n == nil || n.Phase != wfv1.NodeSucceeded {
		t.Errorf("prune-default-deny node %+v", n)
	}
}

// TestFeatureIstio adds and removes the istio feature: its namespace label
// and NetworkPolicies follow.
func TestFeatureIstio(t *testing.T) {
	install(t, loadTemplate(t, trigger.TemplateName))
	r := New(k8s, argoNS, kubectl, kubeconfig)
	r.RetryDelay = time.Millisecond
	ns := namespace(t, "payments-istio")

	wf := newWorkflow(t, ns, plan(ns.Name, "small", "open", true), trigger.Options{})
	if err := r.RunOnce(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	wf = wait(t, wf)
	cur := &corev1.Namespace{}
	exists(t, cur, "", ns.Name)
	if cur.Labels["istio-injection"] != "enabled" {
		t.Errorf("namespace labels %v, want istio-injection=enabled", cur.Labels)
	}
	if wf.Status.Phase != wfv1.WorkflowSucceeded {
		// Argo's when evaluation (govaluate) ends a quoted string at a double
		// quote, so "'{{workflow.parameters.ingress-from}}' != '[]'" errors
		// once the list holds a namespace name.
		t.Fatalf("phase %s: %s", wf.Status.Phase, wf.Status.Message)
	}
	if !exists(t, &networkingv1.NetworkPolicy{}, ns.Name, "nsprov-allow-feature-ingress") {
		t.Error("no NetworkPolicy nsprov-allow-feature-ingress with istio")
	}

	wf = newWorkflow(t, ns, plan(ns.Name, "small", "open", false), trigger.Options{})
	if err := r.RunOnce(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	if wf = wait(t, wf); wf.Status.Phase != wfv1.WorkflowSucceeded {
		t.Fatalf("phase %s: %s", wf.Status.Phase, wf.Status.Message)
	}
	exists(t, cur, "", ns.Name)
	if _, ok := cur.Labels["istio-injection"]; ok {
		t.Errorf("namespace labels %v still carry istio-injection", cur.Labels)
	}
	if exists(t, &networkingv1.NetworkPolicy{}, ns.Name, "nsprov-allow-feature-ingress") {
		t.Error("nsprov-allow-feature-ingress was not pruned")
	}
}

func TestUnsupportedConstructFailsLoudly(t *testing.T) {
	tmpl := loadTemplate(t, "nsprov-with-container")
	tmpl.Spec.Templates = append(tmpl.Spec.Templates, wfv1.Template{
		Name:      "hello",
		Container: &corev1.Container{Image: "busybox", Command: []string{"echo", "hello"}},
	})
	install(t, tmpl)
	ns := namespace(t, "payments-container")
	wf := newWorkflow(t, ns, plan(ns.Name, "micro", "isolated", false), trigger.Options{TemplateName: tmpl.Name})
	r := New(k8s, argoNS, kubectl, kubeconfig)
	if err := r.RunOnce(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	got := wait(t, wf)
	if got.Status.Phase != wfv1.WorkflowFailed || !strings.Contains(got.Status.Message, "spec.templates[hello].container") {
		t.Errorf("phase %s message %q, want Failed naming spec.templates[hello].container", got.Status.Phase, got.Status.Message)
	}
	if exists(t, &corev1.ResourceQuota{}, ns.Name, "nsprov-quota") {
		t.Error("a workflow with an unsupported template still applied steps")
	}
}

func TestUnsupportedFields(t *testing.T) {
	base := loadTemplate(t, "x").Spec
	cases := map[string]func(s *wfv1.WorkflowSpec){
		"spec.onExit":                   func(s *wfv1.WorkflowSpec) { s.OnExit = "apply" },
		"spec.synchronization":          func(s *wfv1.WorkflowSpec) { s.Synchronization = &wfv1.Synchronization{Mutex: &wfv1.Mutex{Name: "m"}} },
		"spec.templates[apply].outputs": func(s *wfv1.WorkflowSpec) { s.Templates[1].Outputs.Parameters = []wfv1.Parameter{{Name: "o"}} },
		"spec.templates[apply].resource.successCondition": func(s *wfv1.WorkflowSpec) {
			s.Templates[1].Resource.SuccessCondition = "status.phase == Ready"
		},
		"spec.templates[provision].dag.tasks[quota].hooks": func(s *wfv1.WorkflowSpec) {
			s.Templates[0].DAG.Tasks[0].Hooks = wfv1.LifecycleHooks{"exit": {Template: "apply"}}
		},
		"spec.templates[provision].dag.tasks[quota].templateRef": func(s *wfv1.WorkflowSpec) {
			s.Templates[0].DAG.Tasks[0].TemplateRef = &wfv1.TemplateRef{Name: "other", Template: "t"}
		},
		"spec.templates[wait].suspend": func(s *wfv1.WorkflowSpec) {
			s.Templates = append(s.Templates, wfv1.Template{Name: "wait", Suspend: &wfv1.SuspendTemplate{}})
		},
	}
	for field, mutate := range cases {
		t.Run(field, func(t *testing.T) {
			s := base.DeepCopy()
			mutate(s)
			err := checkSupported(s, s.Templates)
			if err == nil || !strings.Contains(err.Error(), field) {
				t.Errorf("error %v, want one naming %s", err, field)
			}
		})
	}
	if err := checkSupported(&base, base.Templates); err != nil {
		t.Errorf("the chart's template is refused: %v", err)
	}
}

func TestMissingTemplate(t *testing.T) {
	ns := namespace(t, "payments-missing")
	wf := newWorkflow(t, ns, plan(ns.Name, "micro", "isolated", false), trigger.Options{ArgoNamespace: "argo-empty"})
	r := New(k8s, "argo-empty", kubectl, kubeconfig)
	if err := r.RunOnce(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	got := wait(t, wf)
	want := `workflowtemplates.argoproj.io "nsprov-provision" not found`
	if got.Status.Phase != wfv1.WorkflowError || got.Status.Message != want {
		t.Errorf("phase %s message %q, want Error %q", got.Status.Phase, got.Status.Message, want)
	}
	if got.Status.FinishedAt.IsZero() {
		t.Error("no finishedAt")
	}
}

// failingTemplate applies into a namespace that does not exist, with two
// retries of the step.
const failingTemplate = `
entrypoint: main
arguments:
  parameters:
    - name: namespace
templates:
  - name: main
    dag:
      tasks:
        - name: config
          template: apply
        - name: after
          template: apply
          depends: config
  - name: apply
    retryStrategy:
      limit: "2"
    resource:
      action: apply
      manifest: |
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: x
          namespace: "{{workflow.parameters.namespace}}"
`

func TestFailedStepReportsKubectl(t *testing.T) {
	tmpl := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: "failing", Namespace: argoNS}}
	if err := yaml.UnmarshalStrict([]byte(failingTemplate), &tmpl.Spec); err != nil {
		t.Fatal(err)
	}
	install(t, tmpl)
	wf := &wfv1.Workflow{
		ObjectMeta: metav1.ObjectMeta{Name: "failing", Namespace: argoNS},
		Spec: wfv1.WorkflowSpec{
			WorkflowTemplateRef: &wfv1.WorkflowTemplateRef{Name: "failing"},
			Arguments:           wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "namespace", Value: wfv1.AnyStringPtr("does-not-exist")}}},
		},
	}
	if err := k8s.Create(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	r := New(k8s, argoNS, kubectl, kubeconfig)
	r.RetryDelay = time.Millisecond
	if err := r.RunOnce(context.Background(), wf); err != nil {
		t.Fatal(err)
	}
	got := wait(t, wf)
	if got.Status.Phase != wfv1.WorkflowFailed {
		t.Fatalf("phase %s", got.Status.Phase)
	}
	want := `step config failed: Error from server (NotFound): error when creating`
	if !strings.HasPrefix(got.Status.Message, want) || !strings.Contains(got.Status.Message, `namespaces "does-not-exist" not found`) {
		t.Errorf("message %q, want %q... with kubectl's error", got.Status.Message, want)
	}
	config := nodeByDisplayName(got, "config")
	if config == nil || config.Type != wfv1.NodeTypeRetry || config.Phase != wfv1.NodeFailed || len(config.Children) != 3 {
		t.Errorf("config node %+v, want a failed Retry node with 3 attempts", config)
	}
	if after := nodeByDisplayName(got, "after"); after != nil {
		t.Errorf("a task depending on a failed task ran: %+v", after)
	}
	if got.Status.Progress != "0/3" {
		t.Errorf("progress %q, want 0/3", got.Status.Progress)
	}
}

func TestKubectlArgumentsMatchArgoexec(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "manifest.yaml")
	if err := os.WriteFile(path, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		res  wfv1.ResourceTemplate
		want []string
	}{
		{wfv1.ResourceTemplate{Action: "apply"}, []string{"kubectl", "apply", "-f", path, "-o", "json"}},
		{wfv1.ResourceTemplate{Action: "create"}, []string{"kubectl", "create", "-f", path, "-o", "json"}},
		{wfv1.ResourceTemplate{Action: "delete"}, []string{"kubectl", "delete", "--ignore-not-found", "-f", path, "-o", "name"}},
		{wfv1.ResourceTemplate{Action: "patch", MergeStrategy: "merge"}, []string{"kubectl", "patch", "--type", "merge", "--patch-file", path, "-f", path, "-o", "json"}},
		{wfv1.ResourceTemplate{Action: "patch"}, []string{"kubectl", "patch", "--type", "strategic", "--patch-file", path, "-f", path, "-o", "json"}},
		{wfv1.ResourceTemplate{Action: "apply", Flags: []string{"--server-side"}}, []string{"kubectl", "apply", "--server-side", "-f", path, "-o", "json"}},
	}
	for _, c := range cases {
		got, err := kubectlArguments(&c.res, path)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s %s: %v, want %v", c.res.Action, c.res.MergeStrategy, got, c.want)
		}
	}
}

func TestShouldExecuteAndExpansion(t *testing.T) {
	for when, want := range map[string]bool{
		"":                  true,
		"'true' == 'true'":  true,
		"'false' == 'true'": false,
		"'[]' != '[]'":      false,
	} {
		got, err := shouldExecute(when)
		if err != nil || got != want {
			t.Errorf("shouldExecute(%q) = %v, %v; want %v", when, got, err, want)
		}
	}
	// govaluate ends a string at ' or ", so a JSON list of strings cannot be
	// quoted into a when expression: Argo itself errors on it.
	if _, err := shouldExecute(`'["istio-system"]' != '[]'`); err == nil {
		t.Error("Argo's when evaluation accepted a JSON string list in quotes")
	}
	task := wfv1.DAGTask{
		Name: "rbac", Template: "apply",
		WithParam: `[{"cluster_role":"edit","group":"team-payments","name":"nsprov-team-edit"}]`,
		Arguments: wfv1.Arguments{Parameters: []wfv1.Parameter{{Name: "manifest", Value: wfv1.AnyStringPtr(`name: "{{item.name}}"`)}}},
	}
	got, err := expandTask(task)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "rbac(0:cluster_role:edit,group:team-payments,name:nsprov-team-edit)" ||
		got[0].Arguments.Parameters[0].Value.String() != `name: "nsprov-team-edit"` {
		t.Errorf("expanded %+v", got)
	}
}
