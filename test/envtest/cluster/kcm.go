package cluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KCMOptions configure kube-controller-manager.
type KCMOptions struct {
	// Assets is the directory of kube-controller-manager (KUBEBUILDER_ASSETS).
	Assets string
	// Kubeconfig is its identity (system:kube-controller-manager, or an
	// administrator).
	Kubeconfig []byte
	// ServiceAccountKeyFile is the API server's service account signing key
	// (envtest's CertDir/sa-signer.key).
	ServiceAccountKeyFile string
	// Out receives its logs (default: discarded).
	Out io.Writer
}

// KCMControllers are the controllers kube-controller-manager runs here: the
// garbage collector (owner references, foreground deletion) and the
// namespace controller (deleting a namespace deletes its content, then the
// namespace).
var KCMControllers = []string{"garbagecollector", "namespace"}

// StartKCM starts kube-controller-manager with KCMControllers, without
// leader election and without a serving port.
func StartKCM(o KCMOptions) (*Process, error) {
	bin := filepath.Join(o.Assets, "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no kube-controller-manager in %s (%w): run `make envtest-assets`", o.Assets, errNotBuilt)
	}
	kubeconfig, err := writeKubeconfig(o.Kubeconfig, "", "kube-controller-manager")
	if err != nil {
		return nil, err
	}
	controllers := ""
	for i, c := range KCMControllers {
		if i > 0 {
			controllers += ","
		}
		controllers += c
	}
	p, err := startProcess("kube-controller-manager", bin, []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + controllers,
		"--leader-elect=false",
		"--secure-port=0",
		"--service-account-private-key-file=" + o.ServiceAccountKeyFile,
		"--use-service-account-credentials=false",
		// Namespaces and owners are small here: look again soon.
		"--concurrent-namespace-syncs=5",
		"--concurrent-gc-syncs=20",
	}, nil, o.Out)
	if err != nil {
		_ = os.RemoveAll(filepath.Dir(kubeconfig))
		return nil, err
	}
	p.cleanup = func() { _ = os.RemoveAll(filepath.Dir(kubeconfig)) }
	return p, nil
}
