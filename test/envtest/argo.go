package envtest

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

// InstallProvisionerRBAC installs what the chart renders with its default
// values for the provisioning: the nsprov-provisioner service account in the
// Argo namespace with exactly the permissions the provisioning steps have in
// a cluster (templates/provisioning/provisioner-rbac.yaml), and the
// ValidatingAdmissionPolicies that confine the provisioner and say who may
// launch the provisioning template (templates/admission/provisioning-*.yaml).
func InstallProvisionerRBAC(ctx context.Context, c client.Client) error {
	objs, err := chartrender.Render(nil, "nsprov-system")
	if err != nil {
		return err
	}
	n := 0
	for _, obj := range objs {
		if name := obj.GetName(); !strings.HasPrefix(name, "nsprov-provisioner") && !strings.HasPrefix(name, "nsprov-provisioning-") {
			continue
		}
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("installing %s %s from the chart: %w", obj.GetKind(), obj.GetName(), err)
		}
		n++
	}
	if n == 0 {
		return errors.New("the chart rendered no provisioner RBAC")
	}
	return nil
}

// startArgo installs the provisioner's RBAC and runs Argo's own
// workflow-controller, the process kubelet that runs its step pods with
// argoexec (as the provisioner's service account), and
// kube-controller-manager, beside the API server.
func (e *Env) startArgo(ctx context.Context, assets string) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	argoAssets, err := cluster.ArgoAssetsDir(root)
	if err != nil {
		return err
	}
	if err := InstallProvisionerRBAC(ctx, e.Client); err != nil {
		return err
	}
	e.cluster, err = cluster.Start(context.Background(), cluster.Options{
		ControlPlane: e.env, K8sAssets: assets, ArgoAssets: argoAssets, ArgoNamespace: ArgoNamespace, KCM: true,
	})
	return err
}
