package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/trigger"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

const argoNS = "argo"

// setup starts a control plane with Argo's CRDs, the chart's provisioner RBAC
// and WorkflowTemplate, and the cluster parts of this package.
func setup(t *testing.T, requeue time.Duration) (client.Client, *cluster.Cluster) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the kubelet needs root for mount namespaces")
	}
	crlog.SetLogger(logr.Discard())
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
	cp.CRDInstallOptions.Paths = slices.DeleteFunc(cp.CRDInstallOptions.Paths, func(p string) bool {
		return !strings.Contains(p, "argo")
	})
	t.Cleanup(func() { _ = cp.Stop() })
	cfg, err := cp.Start()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: argoNS}}); err != nil {
		t.Fatal(err)
	}
	// Workflows are created here by the test, not by nsprov's controller: no
	// launch policy.
	installed, err := envtest.InstallProvisioner(ctx, c, false)
	if err != nil {
		t.Fatal(err)
	}
	// The service account, its ClusterRole and binding, the executor's Role
	// and binding, and the ValidatingAdmissionPolicy nsprov-provisioner with
	// its binding.
	if len(installed) != 7 {
		t.Fatalf("the chart rendered %d provisioner RBAC and admission policy objects, want 7", len(installed))
	}
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := envtest.LoadWorkflowTemplate(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	logDir := os.Getenv("NSPROV_CLUSTER_LOGS") // kept for a look after the test
	if logDir == "" {
		logDir = t.TempDir()
	}
	logs, err := os.Create(filepath.Join(logDir, "cluster.log"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := cluster.Start(context.Background(), cluster.Options{
		ControlPlane: cp, K8sAssets: assets, ArgoAssets: argoAssets, ArgoNamespace: argoNS, KCM: true, Out: logs,
		ArgoRequeueTime: requeue,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Stop()
		if t.Failed() {
			data, _ := os.ReadFile(logs.Name())
			t.Logf("errors of workflow-controller and kube-controller-manager:\n%s", envtest.GrepLines(string(data), "level=error"))
		}
		_ = logs.Close()
	})
	return c, cl
}

// request creates a namespace as alice of team payments would, and returns
// it with the plan the embedded policy makes for it.
func request(t *testing.T, c client.Client, name string) (*corev1.Namespace, map[string]any) {
	t.Helper()
	ctx := t.Context()
	b, err := policy.LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "development",
	}}}
	d, err := admission.Decide(ctx, b, &policy.Request{Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: ns})
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allowed || d.Plan == nil {
		t.Fatalf("%s denied or without a plan: %v", name, d.Violations)
	}
	ns = d.Object.DeepCopy()
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return ns, d.Plan
}

// run creates the Workflow and waits for it to end.
func run(t *testing.T, c client.Client, cl *cluster.Cluster, wf *wfv1.Workflow, timeout time.Duration) *wfv1.Workflow {
	t.Helper()
	if err := c.Create(t.Context(), wf); err != nil {
		t.Fatal(err)
	}
	got := &wfv1.Workflow{}
	envtest.Eventually(t, timeout, "workflow "+wf.Name+" ends", func() error {
		if err := cl.Check(); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(t.Context(), client.ObjectKeyFromObject(wf), got); err != nil {
			return err
		}
		if !got.Status.Fulfilled() {
			return fmt.Errorf("phase %q, progress %s", got.Status.Phase, got.Status.Progress)
		}
		return nil
	})
	return got
}

func workflow(t *testing.T, ns *corev1.Namespace, plan map[string]any, template string) *wfv1.Workflow {
	t.Helper()
	p, err := trigger.DecodePlan(plan)
	if err != nil {
		t.Fatal(err)
	}
	return trigger.NewWorkflow(ns, p, trigger.RunKey(trigger.Hash(trigger.Parameters(p)), "test", ""), 1, trigger.Options{ArgoNamespace: argoNS, TemplateName: template})
}

// failedSteps are the messages of the failed pod nodes.
func failedSteps(wf *wfv1.Workflow) []string {
	var out []string
	for _, n := range wf.Status.Nodes {
		if n.Type == wfv1.NodeTypePod && n.Phase != wfv1.NodeSucceeded {
			out = append(out, n.DisplayName+": "+n.Message)
		}
	}
	slices.Sort(out)
	return out
}

func TestArgoRunsTheChartsTemplate(t *testing.T) {
	c, cl := setup(t, 0)
	ctx := t.Context()

	var provisioned *corev1.Namespace
	var provisionedWF *wfv1.Workflow
	t.Run("provisions a namespace as the provisioner with the chart's RBAC", func(t *testing.T) {
		ns, plan := request(t, c, "payments-dev")
		start := time.Now()
		wf := run(t, c, cl, workflow(t, ns, plan, ""), 3*time.Minute)
		if wf.Status.Phase != wfv1.WorkflowSucceeded {
			t.Fatalf("workflow %s: %s (%s); failed steps %v", wf.Name, wf.Status.Phase, wf.Status.Message, failedSteps(wf))
		}
		t.Logf("provisioned in %s", time.Since(start).Round(100*time.Millisecond))
		quota := &corev1.ResourceQuota{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "nsprov-quota"}, quota); err != nil {
			t.Fatal(err)
		}
		if got, want := quota.Spec.Hard.Name("requests.cpu", "").String(), plan["quota"].(map[string]any)["cpu"]; got != want {
			t.Errorf("quota requests.cpu %s, want %v", got, want)
		}
		rb := &rbacv1.RoleBinding{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "nsprov-team-edit"}, rb); err != nil {
			t.Fatal(err)
		}
		provisioned, provisionedWF = ns, wf
	})

	t.Run("a missing template fails with Argo's message", func(t *testing.T) {
		ns, plan := request(t, c, "payments-missing-dev")
		wf := run(t, c, cl, workflow(t, ns, plan, "nsprov-missing"), time.Minute)
		want := `workflowtemplates.argoproj.io "nsprov-missing" not found`
		if wf.Status.Phase != wfv1.WorkflowError || !strings.Contains(wf.Status.Message, want) {
			t.Fatalf("workflow %s: %s (%q), want Error with %q", wf.Name, wf.Status.Phase, wf.Status.Message, want)
		}
	})

	t.Run("a forbidden step fails with the API server's message after Argo's retries", func(t *testing.T) {
		ns, plan := request(t, c, "payments-forbidden-dev")
		plan["role_bindings"] = []any{map[string]any{"name": "nsprov-team-admin", "cluster_role": "cluster-admin", "group": "team-payments"}}
		wf := run(t, c, cl, workflow(t, ns, plan, ""), 3*time.Minute)
		steps := strings.Join(failedSteps(wf), "\n")
		want := `rolebindings.rbac.authorization.k8s.io "nsprov-team-admin" is forbidden: user "system:serviceaccount:argo:nsprov-provisioner"`
		if wf.Status.Phase != wfv1.WorkflowFailed || !strings.Contains(steps, want) {
			t.Fatalf("workflow %s: %s (%q); failed steps:\n%s\nwant Failed with %q", wf.Name, wf.Status.Phase, wf.Status.Message, steps, want)
		}
		var attempts int
		for _, n := range wf.Status.Nodes {
			if n.Type == wfv1.NodeTypePod && strings.HasPrefix(n.DisplayName, "rbac(") {
				attempts++
			}
		}
		if attempts != 5 {
			t.Errorf("the forbidden step ran %d times, want 5 (retryStrategy limit 4)", attempts)
		}
	})

	t.Run("deleting the namespace completes and takes its workflow with it", func(t *testing.T) {
		if provisioned == nil {
			t.Skip("nothing was provisioned")
		}
		if err := c.Delete(ctx, provisioned); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, 2*time.Minute, "namespace and workflow gone", func() error {
			if err := c.Get(ctx, client.ObjectKeyFromObject(provisioned), &corev1.Namespace{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s still there (%v)", provisioned.Name, err)
			}
			if err := c.Get(ctx, client.ObjectKeyFromObject(provisionedWF), &wfv1.Workflow{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("workflow %s still there (%v)", provisionedWF.Name, err)
			}
			return nil
		})
	})
}

// TestArgoThroughput measures how many namespaces Argo provisions a minute
// with the chart's template and the workflow-controller's default settings
// (DEFAULT_REQUEUE_TIME 10s, 32 workflow workers, 20 QPS): a burst of
// NSPROV_ARGO_THROUGHPUT namespaces (skipped when unset), all requested at
// once. It logs the figure; it asserts that every one succeeds, never timing.
func TestArgoThroughput(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("NSPROV_ARGO_THROUGHPUT"))
	if n <= 0 {
		t.Skip("set NSPROV_ARGO_THROUGHPUT to the number of namespaces to measure")
	}
	c, cl := setup(t, 10*time.Second)
	ctx := t.Context()
	var wfs []*wfv1.Workflow
	for i := range n {
		ns, plan := request(t, c, fmt.Sprintf("burst-%03d-dev", i))
		wfs = append(wfs, workflow(t, ns, plan, ""))
	}
	start := time.Now()
	for _, wf := range wfs {
		if err := c.Create(ctx, wf); err != nil {
			t.Fatal(err)
		}
	}
	envtest.Eventually(t, time.Duration(n)*time.Minute, fmt.Sprintf("%d workflows succeed", n), func() error {
		if err := cl.Check(); err != nil {
			t.Fatal(err)
		}
		list := &wfv1.WorkflowList{}
		if err := c.List(ctx, list, client.InNamespace(argoNS)); err != nil {
			return err
		}
		done := 0
		for _, wf := range list.Items {
			switch wf.Status.Phase {
			case wfv1.WorkflowSucceeded:
				done++
			case wfv1.WorkflowFailed, wfv1.WorkflowError:
				t.Fatalf("workflow %s: %s (%s); failed steps %v", wf.Name, wf.Status.Phase, wf.Status.Message, failedSteps(&wf))
			}
		}
		if done < n {
			return fmt.Errorf("%d of %d succeeded", done, n)
		}
		return nil
	})
	d := time.Since(start)
	t.Logf("%d namespaces provisioned by Argo in %s: %.1f a minute (%d CPUs)", n, d.Round(time.Second), float64(n)/d.Minutes(), runtime.NumCPU())
}
