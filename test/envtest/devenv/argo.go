package devenv

import (
	"context"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

// startArgo runs Argo's own workflow-controller, the process kubelet that
// runs its step pods with argoexec as the provisioner's service account (with
// the chart's RBAC, installed by installChart), and kube-controller-manager;
// their logs go to the log file.
func (e *Env) startArgo(ctx context.Context, assets string) error {
	argoAssets, err := envtest.ArgoAssetsDir()
	if err != nil {
		return err
	}
	e.cluster, err = cluster.Start(ctx, cluster.Options{
		ControlPlane: e.cp, K8sAssets: assets, ArgoAssets: argoAssets,
		ArgoNamespace: envtest.ArgoNamespace, KCM: true, Out: e.log,
	})
	return err
}
