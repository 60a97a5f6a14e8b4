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

// InstallProvisioner installs what the chart renders with its default values
// for the provisioning steps: the nsprov-provisioner service account in the
// Argo namespace with exactly the permissions the steps have in a cluster
// (templates/provisioning/provisioner-rbac.yaml) and the
// ValidatingAdmissionPolicy that confines them
// (templates/admission/provisioning-provisioner.yaml). With launch, it also
// installs the policy that lets only nsprov's service account launch the
// provisioning template (templates/admission/provisioning-launch.yaml). It
// returns the objects it created.
func InstallProvisioner(ctx context.Context, c client.Client, launch bool) ([]client.Object, error) {
	objs, err := chartrender.Render(nil, "nsprov-system")
	if err != nil {
		return nil, err
	}
	var installed []client.Object
	for _, obj := range objs {
		name := obj.GetName()
		if !strings.HasPrefix(name, "nsprov-provisioner") && !(launch && strings.HasPrefix(name, "nsprov-provisioning-")) {
			continue
		}
		if err := c.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("installing %s %s from the chart: %w", obj.GetKind(), name, err)
		}
		installed = append(installed, obj)
	}
	if len(installed) == 0 {
		return nil, errors.New("the chart rendered no provisioner RBAC")
	}
	return installed, nil
}

// ArgoAssetsDir is the directory of Argo's workflow-controller and argoexec:
// ARGO_ASSETS, or bin/argo of the repository.
func ArgoAssetsDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return cluster.ArgoAssetsDir(root)
}

// startArgo installs the provisioner's RBAC and admission policies and runs
// Argo's own workflow-controller, the process kubelet that runs its step pods
// with argoexec (as the provisioner's service account), and
// kube-controller-manager, beside the API server.
func (e *Env) startArgo(ctx context.Context, assets string) error {
	argoAssets, err := ArgoAssetsDir()
	if err != nil {
		return err
	}
	if _, err := InstallProvisioner(ctx, e.Client, true); err != nil {
		return err
	}
	e.cluster, err = cluster.Start(context.Background(), cluster.Options{
		ControlPlane: e.env, K8sAssets: assets, ArgoAssets: argoAssets, ArgoNamespace: ArgoNamespace, KCM: true,
	})
	return err
}
