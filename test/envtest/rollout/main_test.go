package rollout

import (
	"context"
	"fmt"
	"os"
	"testing"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
)

// The pace of the suite: see doc.go.
const (
	// maxRunning is nsprov's --max-running-workflows.
	maxRunning = 80
	// startRate is nsprov's --workflow-start-rate: well above what the
	// bound lets through (about maxRunning / stepDuration a second), so
	// the bound is what holds the Workflows back.
	startRate = 100
	// stepDuration is how long the pod-less template's only step waits.
	stepDuration = "10s"
)

var (
	env *envtest.Env
	// policyDir holds the policy nsprov serves; the test edits it.
	policyDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	var err error
	if policyDir, err = os.MkdirTemp("", "nsprov-rollout-policy-"); err != nil {
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		return 1
	}
	defer os.RemoveAll(policyDir)
	if err := policies.Export(policyDir); err != nil {
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		return 1
	}
	// Argo's workflow-controller reads its flags from ARGO_* variables
	// (viper), and inherits this process's environment: its client may
	// send 300 requests a second rather than 20.
	for k, v := range map[string]string{"ARGO_QPS": "300", "ARGO_BURST": "600"} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
			return 1
		}
	}
	env, err = envtest.Start(ctx, envtest.Options{PolicyDir: policyDir, ServerArgs: []string{
		"--max-running-workflows", fmt.Sprint(maxRunning),
		"--workflow-start-rate", fmt.Sprint(startRate), "--workflow-start-burst", fmt.Sprint(maxRunning),
		"--kube-api-qps", "500", "--kube-api-burst", "1000",
		"--concurrent-reconciles", "8",
	}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "rollout: stopping the control plane: %v\n", err)
		}
	}()
	if err := installPodless(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "rollout: %v\n", err)
		return 1
	}
	return m.Run()
}

// installPodless replaces the chart's nsprov-provision WorkflowTemplate by a
// pod-less one: the same name, parameters and workflow-level settings, and
// one suspend step of stepDuration as the entrypoint, which Argo's
// controller runs to Succeeded without a pod.
func installPodless(ctx context.Context) error {
	tmpl := &wfv1.WorkflowTemplate{}
	key := client.ObjectKey{Namespace: envtest.ArgoNamespace, Name: "nsprov-provision"}
	if err := env.Client.Get(ctx, key, tmpl); err != nil {
		return fmt.Errorf("reading the chart's WorkflowTemplate: %w", err)
	}
	tmpl.Spec.Templates = []wfv1.Template{{
		Name:    tmpl.Spec.Entrypoint,
		Suspend: &wfv1.SuspendTemplate{Duration: stepDuration},
	}}
	if err := env.Client.Update(ctx, tmpl); err != nil {
		return fmt.Errorf("installing the pod-less WorkflowTemplate: %w", err)
	}
	return nil
}
