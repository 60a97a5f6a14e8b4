// Package plugin tests `kubectl nsprov` (request, status, why) against the
// real API server, as the requesters alice (team-payments) and bob
// (team-web) and as eve, who is in no requester group: each runs the
// commands in process with a kubeconfig of her own, as kubectl would run the
// plugin. The control plane runs nsprov's webhooks with the audit sink and
// its writer (so denials reach the ClusterReport nsprov-admission-denials),
// real Argo to provision, a policy directory of its own (which the audit
// test tightens), and the chart's requester RBAC for alice's and bob's
// groups in place of the harness's grant to every user, with the chart's
// admission policy that keeps a requester to her own team's namespaces.
package plugin

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// requesterGroups are the chart's requester.groups in this package.
var requesterGroups = []any{"team-payments", "team-web"}

var (
	env *envtest.Env
	// policyDir is the policy bundle the webhooks serve and watch.
	policyDir string
	// kubeconfigDir holds the users' kubeconfigs.
	kubeconfigDir string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "nsprov-plugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	policyDir, kubeconfigDir = filepath.Join(dir, "policies"), filepath.Join(dir, "kubeconfigs")
	if err := policies.Export(policyDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Mkdir(kubeconfigDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sink := audit.NewSink(audit.Options{DecisionLog: &envtest.SyncBuffer{}, Logger: logr.Discard()})
	env, err = envtest.Start(ctx, envtest.Options{PolicyDir: policyDir, Recorder: sink})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "envtest: stopping the control plane: %v\n", err)
		}
	}()
	if err := installRequesterAccess(ctx, env.Client); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The denial writer runs as nsprov's service account would.
	cfg, err := env.User(envtest.ControllerUser, "system:serviceaccounts", "system:masters")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	stop, err := startWriter(cfg, sink)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	return m.Run()
}

// installRequesterAccess applies the chart's requester RBAC
// (templates/rbac/requester.yaml) for requesterGroups, replacing the
// harness's ClusterRole and binding of the same name that let every user
// request namespaces, and the admission policy that narrows the role's
// update and patch to a requester's own team's request annotations
// (templates/admission/namespace-requester.yaml).
func installRequesterAccess(ctx context.Context, c client.Client) error {
	objs, err := chartrender.Render(map[string]any{
		"requester": map[string]any{"enabled": true, "groups": requesterGroups},
	}, "nsprov-system")
	if err != nil {
		return err
	}
	n := 0
	for _, obj := range objs {
		rbac := obj.GetName() == "nsprov-requester" && obj.GroupVersionKind().Group == "rbac.authorization.k8s.io"
		policy := obj.GetName() == "nsprov-namespace-requester" && obj.GroupVersionKind().Group == "admissionregistration.k8s.io"
		if !rbac && !policy {
			continue
		}
		n++
		existing := &unstructured.Unstructured{}
		existing.SetGroupVersionKind(obj.GroupVersionKind())
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing)
		switch {
		case err == nil:
			obj.SetResourceVersion(existing.GetResourceVersion())
			err = c.Update(ctx, obj)
		case client.IgnoreNotFound(err) == nil:
			err = c.Create(ctx, obj)
		}
		if err != nil {
			return fmt.Errorf("applying the chart's %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if n != 6 {
		return fmt.Errorf("the chart rendered %d requester objects, want 6 (ClusterRole, ClusterRoleBinding, Role, RoleBinding, ValidatingAdmissionPolicy and its binding)", n)
	}
	return nil
}

// startWriter runs a denial Writer for s until the returned function is
// called, which waits for it to return.
func startWriter(cfg *rest.Config, s *audit.Sink) (func(), error) {
	w, err := audit.NewWriter(cfg, s)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Start(ctx) })
	return func() { cancel(); wg.Wait() }, nil
}
