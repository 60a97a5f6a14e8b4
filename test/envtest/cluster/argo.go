package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ArgoVersion is the Argo Workflows release hack/argo.sh builds.
const ArgoVersion = "v3.7.3"

// ArgoConfigMap is the workflow-controller's configuration.
const ArgoConfigMap = "workflow-controller-configmap"

// ArgoAssetsDir finds workflow-controller and argoexec: $ARGO_ASSETS, or
// bin/argo under root (as built by `make argo-assets`).
func ArgoAssetsDir(root string) (string, error) {
	dir := os.Getenv("ARGO_ASSETS")
	if dir == "" {
		dir = filepath.Join(root, "bin", "argo")
	}
	for _, b := range []string{"workflow-controller", "argoexec"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("no %s in %s (%w): run `make argo-assets` (or `make test`), or set ARGO_ASSETS", b, dir, errNotBuilt)
		}
	}
	return dir, nil
}

// ArgoOptions configure Argo's workflow-controller.
type ArgoOptions struct {
	// Assets is the directory of workflow-controller and argoexec.
	Assets string
	// Kubeconfig is the controller's identity.
	Kubeconfig []byte
	// Namespace is where the controller is installed and which Workflows it
	// runs (default "argo").
	Namespace string
	// RequeueTime is DEFAULT_REQUEUE_TIME, how soon a Workflow is looked at
	// again after a change (default 1s; Argo's own default of 10s adds about
	// 9s to every step).
	RequeueTime time.Duration
	// Out receives the controller's logs (default: discarded).
	Out io.Writer
}

// StartArgo installs the workflow-controller's ConfigMap (when missing) and
// starts the controller: namespaced to Namespace, leader election and
// metrics off so that several can run on one machine.
func StartArgo(ctx context.Context, c client.Client, o ArgoOptions) (*Process, error) {
	if o.Namespace == "" {
		o.Namespace = "argo"
	}
	if o.RequeueTime <= 0 {
		o.RequeueTime = time.Second
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ArgoConfigMap, Namespace: o.Namespace},
		Data: map[string]string{
			"metricsConfig":   "enabled: false\n",
			"telemetryConfig": "enabled: false\n",
		},
	}
	if err := c.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("installing the workflow-controller ConfigMap: %w", err)
	}
	kubeconfig, err := writeKubeconfig(o.Kubeconfig, o.Namespace, "workflow-controller")
	if err != nil {
		return nil, err
	}
	p, err := startProcess("workflow-controller", filepath.Join(o.Assets, "workflow-controller"), []string{
		"--kubeconfig", kubeconfig,
		"--configmap", ArgoConfigMap,
		"--namespaced", "--managed-namespace", o.Namespace,
		"--executor-image", "quay.io/argoproj/argoexec:" + ArgoVersion,
	}, []string{
		"LEADER_ELECTION_DISABLE=true",
		"DEFAULT_REQUEUE_TIME=" + o.RequeueTime.String(),
	}, o.Out)
	if err != nil {
		_ = os.RemoveAll(filepath.Dir(kubeconfig))
		return nil, err
	}
	p.cleanup = func() { _ = os.RemoveAll(filepath.Dir(kubeconfig)) }
	return p, nil
}

// writeKubeconfig writes kubeconfig, its current context set to namespace,
// into a new private directory, and returns the file's path.
func writeKubeconfig(kubeconfig []byte, namespace, name string) (string, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("reading the kubeconfig of %s: %w", name, err)
	}
	if kctx, ok := cfg.Contexts[cfg.CurrentContext]; ok && namespace != "" {
		kctx.Namespace = namespace
	}
	dir, err := os.MkdirTemp("", "nsprov-"+name+"-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return path, nil
}
