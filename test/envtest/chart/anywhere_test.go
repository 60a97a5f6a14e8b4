package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/cluster"
	"github.com/nsprov/nsprov/test/envtest/devenv"
)

// A release that is neither in nsprov-system nor called nsprov, with Argo
// in a namespace of its own.
const (
	anywhereRelease   = "tenancy"
	anywhereNamespace = "platform-tools"
	anywhereArgo      = "workflows"
)

func anywhereValues() map[string]any {
	return map[string]any{
		"argo":      map[string]any{"namespace": anywhereArgo},
		"requester": map[string]any{"enabled": true, "groups": []any{"team-payments"}},
	}
}

// TestRenderAnywhere: nothing the chart renders for another namespace and
// release name names nsprov-system or argo, and the policy data it renders
// names nsprov's identities in the release's namespaces.
func TestRenderAnywhere(t *testing.T) {
	r, err := chartrender.RenderRelease(anywhereValues(), anywhereRelease, anywhereNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range append(slices.Clone(r.Objects), r.Hooks...) {
		b, err := json.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		for _, stale := range []string{"nsprov-system", ":argo:", `"argo"`} {
			if strings.Contains(string(b), stale) {
				t.Errorf("%s %s/%s names %s:\n%s", o.GetKind(), o.GetNamespace(), o.GetName(), stale, b)
			}
		}
		if o.GetLabels()["app.kubernetes.io/instance"] != anywhereRelease {
			t.Errorf("%s %s is not labelled with the release %s: %v", o.GetKind(), o.GetName(), anywhereRelease, o.GetLabels())
		}
	}
	if strings.Contains(r.Notes, "nsprov-system") {
		t.Errorf("NOTES.txt names nsprov-system:\n%s", r.Notes)
	}
	cm := find(t, r.Objects, "ConfigMap", "nsprov-install")
	if cm.GetNamespace() != anywhereNamespace {
		t.Errorf("ConfigMap nsprov-install in %q, want %s", cm.GetNamespace(), anywhereNamespace)
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", "config.install.yaml")
	var install struct {
		Install struct {
			Namespace     string   `json:"namespace"`
			ArgoNamespace string   `json:"argo_namespace"`
			ManagerUsers  []string `json:"manager_users"`
		} `json:"install"`
	}
	if err := yaml.UnmarshalStrict([]byte(data), &install); err != nil {
		t.Fatalf("config/install.yaml does not parse: %v\n%s", err, data)
	}
	want := []string{"system:serviceaccount:platform-tools:nsprov", "system:serviceaccount:workflows:nsprov-provisioner"}
	if in := install.Install; in.Namespace != anywhereNamespace || in.ArgoNamespace != anywhereArgo || strings.Join(in.ManagerUsers, ",") != strings.Join(want, ",") {
		t.Errorf("config/install.yaml = %+v, want namespace %s, argo_namespace %s, manager_users %q", in, anywhereNamespace, anywhereArgo, want)
	}
	args, err := devenv.ServeArgs(find(t, r.Objects, "Deployment", "nsprov"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--identity=system:serviceaccount:platform-tools:nsprov", "--argo-namespace=workflows", "--policy-overlay-dir=/etc/nsprov/install"} {
		if !strings.Contains(strings.Join(args, " "), want) {
			t.Errorf("serve's arguments %q lack %s", args, want)
		}
	}
}

// TestInstallAnywhere installs the chart as release tenancy into
// platform-tools, with Argo in workflows, on a control plane of its own with
// Argo's workflow-controller, a process kubelet and kube-controller-manager,
// and follows what Helm does on install, upgrade, helm test and uninstall,
// while alice keeps sending namespace requests that must never fail:
//   - install: the release's objects (webhook configurations on Ignore), then
//     the post-install hook nsprov-activate (its arguments, as nsprov-hooks
//     with the chart's RBAC only) waiting while serve is not running yet;
//     serve starts (as the Deployment's pod would, with its arguments, as
//     platform-tools' nsprov service account), nsprov-activate sees nsprov
//     answer and sets failurePolicy Fail;
//   - a namespace requested by alice is provisioned end to end;
//   - helm test: the test hook's arguments as nsprov-test with the hook's RBAC;
//   - upgrade: the release's objects applied again (failurePolicy back to
//     Ignore), and nsprov-activate again;
//   - uninstall: the pre-delete hook nsprov-remove-webhooks, then serve stops
//     (the Deployment's pods go), then the rest of the release's objects.
//
// No kubelet runs nsprov's own pods here, so the hooks' commands run in
// process at the moments Helm would run their Jobs; the order of Helm's
// steps is TestHooks'.
func TestInstallAnywhere(t *testing.T) {
	ctx := t.Context()
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	argoAssets, err := envtest.ArgoAssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := envtest.NewControlPlane(assets)
	if err != nil {
		t.Fatal(err)
	}
	// Argo's minimal CRDs (its full ones hold 7 MB of schema, which a busy
	// machine takes minutes to establish) and OpenReports'; cert-manager's
	// are not used here.
	var crds []string
	for _, p := range cp.CRDInstallOptions.Paths {
		switch {
		case strings.Contains(p, "cert-manager"):
		case strings.HasSuffix(p, filepath.Join("crds", "full")):
			crds = append(crds, filepath.Join(filepath.Dir(p), "minimal"))
		default:
			crds = append(crds, p)
		}
	}
	cp.CRDInstallOptions.Paths = crds
	cp.CRDInstallOptions.MaxTime = 5 * time.Minute
	t.Cleanup(func() { _ = cp.Stop() })
	cfg, err := cp.Start()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// kubeconfig writes a kubeconfig for a service account of the release.
	kubeconfig := func(namespace, name string) string {
		u, err := cp.AddUser(crenvtest.User{Name: "system:serviceaccount:" + namespace + ":" + name, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace}}, nil)
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
		return path
	}

	r, err := chartrender.RenderRelease(anywhereValues(), anywhereRelease, anywhereNamespace)
	if err != nil {
		t.Fatal(err)
	}
	port, err := envtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{anywhereNamespace, anywhereArgo} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}

	// alice requests namespaces all along (server-side dry runs: nothing
	// is stored); every answer is recorded.
	aliceCfg, err := envtest.UserConfig(cp, "alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(aliceCfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	// Her right to create namespaces is the cluster's own, not the
	// release's: it holds before the install and after the uninstall.
	if err := c.Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "create-namespaces"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"namespaces"}, Verbs: []string{"create"}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "create-namespaces"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "create-namespaces"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "team-payments"}},
	}); err != nil {
		t.Fatal(err)
	}
	requests := startRequests(t, alice)

	// apply is Helm's apply of the release's objects (server-side apply by
	// one field manager, so an upgrade resets what the chart renders).
	var deployment *unstructured.Unstructured
	apply := func() {
		for _, o := range r.Objects {
			obj := o.DeepCopy()
			switch obj.GetKind() {
			case "Deployment":
				deployment = obj
				continue // no kubelet runs nsprov's pods: serve runs in process below
			case "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule":
				continue
			case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
				if err := devenv.CallURL(obj, "https://127.0.0.1:"+strconv.Itoa(port)); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Patch(ctx, obj, client.Apply, client.FieldOwner("helm"), client.ForceOwnership); err != nil {
				t.Fatalf("installing %s %s/%s: %v", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
			}
		}
	}
	apply()
	checkFailurePolicy(ctx, t, c, "Ignore")
	if err := chartrender.Localize(deployment, r.Objects, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	args, err := devenv.ServeArgs(deployment)
	if err != nil {
		t.Fatal(err)
	}

	logDir := os.Getenv("NSPROV_CLUSTER_LOGS")
	if logDir == "" {
		logDir = t.TempDir()
	}
	logs, err := os.Create(filepath.Join(logDir, "anywhere-cluster.log"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cluster.Start(context.Background(), cluster.Options{
		ControlPlane: cp, K8sAssets: assets, ArgoAssets: argoAssets, ArgoNamespace: anywhereArgo, KCM: true, Out: logs,
	})
	if err != nil {
		t.Fatal(err)
	}
	var serveLog envtest.SyncBuffer
	t.Cleanup(func() {
		cl.Stop()
		if t.Failed() {
			data, _ := os.ReadFile(logs.Name())
			t.Logf("errors of workflow-controller and kube-controller-manager:\n%s", envtest.GrepLines(string(data), "level=error"))
			t.Logf("serve:\n%s", serveLog.String())
		}
		_ = logs.Close()
	})

	// The post-install hook starts waiting before any replica runs.
	hooksKC := kubeconfig(anywhereNamespace, "nsprov-hooks")
	activate := runHook(t, r.Hooks, "nsprov-activate", hooksKC)
	requests.expect(t, "before serve runs", false)
	checkFailurePolicy(ctx, t, c, "Ignore")

	// serve as the pod would run it: platform-tools' nsprov service account.
	probes, err := envtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := envtest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "--kubeconfig", kubeconfig(anywhereNamespace, "nsprov"),
		"--webhook-host", "127.0.0.1", "--webhook-port", strconv.Itoa(port),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", metrics),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", probes),
		"--cert-namespace", anywhereNamespace, "--cert-hosts", "127.0.0.1",
		"--leader-election-namespace", anywhereNamespace, "--log-format", "text")
	serveCtx, stopServe := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() { exited <- app.Run(serveCtx, args, strings.NewReader(""), io.Discard, &serveLog) }()
	serveStopped := false
	t.Cleanup(func() {
		stopServe()
		if !serveStopped {
			<-exited
		}
	})

	// nsprov-activate sees nsprov answer and sets failurePolicy Fail.
	if res := activate.wait(t, 5*time.Minute); res.code != 0 {
		t.Fatalf("nsprov-activate exited with %d:\n%s\nserve:\n%s", res.code, res.out, serveLog.String())
	}
	checkFailurePolicy(ctx, t, c, "Fail")
	requests.expect(t, "after activation", true)

	ns := requested("payments-dev")
	if err := alice.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 3*time.Minute, "payments-dev provisioned", func() error {
		got := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: "payments-dev"}, got); err != nil {
			return err
		}
		var cond *corev1.NamespaceCondition
		for i := range got.Status.Conditions {
			if got.Status.Conditions[i].Type == "Provisioned" {
				cond = &got.Status.Conditions[i]
			}
		}
		if cond == nil || cond.Status != corev1.ConditionTrue {
			return fmt.Errorf("condition Provisioned: %+v", cond)
		}
		if wf := got.Annotations["nsprov.io/workflow"]; !strings.HasPrefix(wf, anywhereArgo+"/") {
			return fmt.Errorf("nsprov.io/workflow = %q, want a Workflow in %s", wf, anywhereArgo)
		}
		return nil
	})
	quotas := &corev1.ResourceQuotaList{}
	if err := c.List(ctx, quotas, client.InNamespace("payments-dev")); err != nil {
		t.Fatal(err)
	}
	if len(quotas.Items) == 0 {
		t.Error("payments-dev is Provisioned without a ResourceQuota")
	}

	// helm test: the test hooks' RBAC, then the test Pod's command as
	// nsprov-test.
	for _, h := range r.Hooks {
		if h.GetAnnotations()[chartrender.HookAnnotation] == "test" && h.GetKind() != "Pod" {
			if err := c.Create(ctx, h.DeepCopy()); err != nil {
				t.Fatalf("creating test hook %s %s: %v", h.GetKind(), h.GetName(), err)
			}
		}
	}
	smoke := runHook(t, r.Hooks, "nsprov-test", kubeconfig(anywhereNamespace, "nsprov-test")).wait(t, time.Minute)
	if smoke.code != 0 || !strings.Contains(smoke.out, "PASS deny") || !strings.Contains(smoke.out, "PASS allow") {
		t.Errorf("helm test's pod exited with %d:\n%s", smoke.code, smoke.out)
	}

	// Upgrade: Helm applies the release's objects again, which puts the
	// webhooks back on Ignore while the replicas keep answering, then runs
	// nsprov-activate again.
	apply()
	checkFailurePolicy(ctx, t, c, "Ignore")
	if res := runHook(t, r.Hooks, "nsprov-activate", hooksKC).wait(t, 5*time.Minute); res.code != 0 {
		t.Fatalf("nsprov-activate after the upgrade exited with %d:\n%s", res.code, res.out)
	}
	checkFailurePolicy(ctx, t, c, "Fail")
	requests.expect(t, "after the upgrade", true)

	// Uninstall: the pre-delete hook removes the webhook configurations
	// while the replicas still run; once the API server no longer calls
	// nsprov, the pods go.
	if res := runHook(t, r.Hooks, "nsprov-remove-webhooks", hooksKC).wait(t, time.Minute); res.code != 0 {
		t.Fatalf("nsprov-remove-webhooks exited with %d:\n%s", res.code, res.out)
	}
	for _, obj := range []client.Object{&admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}} {
		if err := c.Get(ctx, client.ObjectKey{Name: "nsprov"}, obj); !apierrors.IsNotFound(err) {
			t.Errorf("%T nsprov after the pre-delete hook: %v, want it gone", obj, err)
		}
	}
	requests.expect(t, "after the pre-delete hook", false)
	stopServe()
	<-exited
	serveStopped = true
	for _, o := range r.Objects {
		if o.GetKind() == "Deployment" || monitoringKinds[o.GetKind()] {
			continue
		}
		if err := c.Delete(ctx, o.DeepCopy()); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}
	requests.expect(t, "after the uninstall", false)
	total, failed := requests.stop()
	t.Logf("alice's requests during install, upgrade, helm test and uninstall: %d, failed: %d", total, len(failed))
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed, first: %v", len(failed), total, failed[0])
	}
}

// checkFailurePolicy checks the failurePolicy of both of nsprov's webhooks.
func checkFailurePolicy(ctx context.Context, t *testing.T, c client.Client, want string) {
	t.Helper()
	m := &admissionregistrationv1.MutatingWebhookConfiguration{}
	v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	for _, obj := range []client.Object{m, v} {
		if err := c.Get(ctx, client.ObjectKey{Name: "nsprov"}, obj); err != nil {
			t.Fatal(err)
		}
	}
	if got := string(*m.Webhooks[0].FailurePolicy); got != want {
		t.Errorf("mutating webhook failurePolicy %s, want %s", got, want)
	}
	if got := string(*v.Webhooks[0].FailurePolicy); got != want {
		t.Errorf("validating webhook failurePolicy %s, want %s", got, want)
	}
}

// hookRun is a hook's command running in process.
type hookRun struct {
	done chan hookResult
}

type hookResult struct {
	code int
	out  string
}

// runHook starts the command of the hook Job or Pod name (its container's
// arguments) with kubeconfig, as its pod would run it.
func runHook(t *testing.T, hooks []*unstructured.Unstructured, name, kubeconfig string) *hookRun {
	t.Helper()
	args := append(jobArgs(t, hooks, name), "--kubeconfig", kubeconfig)
	h := &hookRun{done: make(chan hookResult, 1)}
	go func() {
		var out envtest.SyncBuffer
		code := app.Run(context.Background(), args, strings.NewReader(""), &out, &out)
		h.done <- hookResult{code, out.String()}
	}()
	return h
}

func (h *hookRun) wait(t *testing.T, d time.Duration) hookResult {
	t.Helper()
	select {
	case r := <-h.done:
		return r
	case <-time.After(d):
		t.Fatalf("the hook did not finish within %s", d)
		return hookResult{}
	}
}

// requestLoop sends alice's dry runs until stopped.
type requestLoop struct {
	mu      sync.Mutex
	total   int
	mutated int
	failed  []error
	stopped chan struct{}
	done    chan struct{}
	alice   client.Client
}

func startRequests(t *testing.T, alice client.Client) *requestLoop {
	l := &requestLoop{stopped: make(chan struct{}), done: make(chan struct{}), alice: alice}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stopped:
				return
			default:
			}
			l.once(fmt.Sprintf("loop-%d-dev", i))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { l.stop() })
	return l
}

// once sends one dry run and records it; it says whether nsprov mutated it.
func (l *requestLoop) once(name string) (bool, error) {
	ns := requested(name)
	err := l.alice.Create(context.Background(), ns, client.DryRunAll)
	mutated := err == nil && ns.Annotations["nsprov.io/requested-by"] == "alice"
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total++
	if err != nil {
		l.failed = append(l.failed, fmt.Errorf("%s: %w", name, err))
	}
	if mutated {
		l.mutated++
	}
	return mutated, err
}

// expect sends a dry run now and checks that it succeeds, mutated by nsprov
// or not.
func (l *requestLoop) expect(t *testing.T, when string, mutated bool) {
	t.Helper()
	envtest.Eventually(t, 30*time.Second, "alice's request "+when, func() error {
		got, err := l.once("expect-dev")
		if err != nil {
			t.Fatalf("alice's request %s failed: %v", when, err)
		}
		if got != mutated {
			return fmt.Errorf("mutated by nsprov: %v, want %v", got, mutated)
		}
		return nil
	})
}

func (l *requestLoop) stop() (int, []error) {
	select {
	case <-l.stopped:
	default:
		close(l.stopped)
	}
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total, l.failed
}
