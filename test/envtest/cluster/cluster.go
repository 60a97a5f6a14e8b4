package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/test/envtest/kubelet"
)

// Options configure Start.
type Options struct {
	// ControlPlane is the started envtest environment.
	ControlPlane *crenvtest.Environment
	// K8sAssets is the directory of the control-plane binaries
	// (KUBEBUILDER_ASSETS), where kube-controller-manager is.
	K8sAssets string
	// ArgoAssets is the directory of workflow-controller and argoexec.
	ArgoAssets string
	// ArgoNamespace is Argo's namespace (default "argo"); it must exist.
	ArgoNamespace string
	// ArgoRequeueTime is the workflow-controller's DEFAULT_REQUEUE_TIME
	// (default 1s, see ArgoOptions.RequeueTime).
	ArgoRequeueTime time.Duration
	// KCM starts kube-controller-manager as well.
	KCM bool
	// Out receives the logs of the processes (default: discarded).
	Out io.Writer
}

// Cluster is what Start runs.
type Cluster struct {
	Kubelet *kubelet.Kubelet
	argo    *Process
	kcm     *Process
}

// Start runs a Kubelet for the Argo namespace (argoexec on its PATH), Argo's
// workflow-controller and, if asked, kube-controller-manager.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if o.ArgoNamespace == "" {
		o.ArgoNamespace = "argo"
	}
	cp := o.ControlPlane
	admin, err := cp.AddUser(crenvtest.User{Name: "nsprov-envtest-cluster", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding the cluster's user: %w", err)
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	if o.KCM {
		if c.kcm, err = StartKCM(KCMOptions{
			Assets: o.K8sAssets, Kubeconfig: kubeconfig, Out: o.Out,
			ServiceAccountKeyFile: filepath.Join(cp.ControlPlane.APIServer.CertDir, "sa-signer.key"),
		}); err != nil {
			return nil, err
		}
	}
	kubeletCfg := admin.Config()
	kubeletCfg.QPS, kubeletCfg.Burst = 100, 200 // a node's pods, written by one client
	if o.Out == nil {
		if dir := os.Getenv("NSPROV_CLUSTER_LOGS"); dir != "" {
			// For a look at a run: the logs of every cluster the tests start.
			f, err := os.CreateTemp(dir, "cluster-*.log")
			if err != nil {
				return nil, err
			}
			o.Out = f
		}
	}
	kubeletCtx := ctx
	if o.Out != nil {
		out := &syncWriter{w: o.Out}
		kubeletCtx = logr.NewContext(ctx, funcr.New(func(prefix, args string) { out.line(prefix + " " + args) }, funcr.Options{}))
	}
	if c.Kubelet, err = kubelet.Start(kubeletCtx, kubelet.Options{
		Config:     kubeletCfg,
		Namespaces: []string{o.ArgoNamespace},
		Path:       []string{o.ArgoAssets},
	}); err != nil {
		return nil, err
	}
	adminClient, err := newClient(admin)
	if err != nil {
		return nil, err
	}
	if c.argo, err = StartArgo(ctx, adminClient, ArgoOptions{
		Assets: o.ArgoAssets, Kubeconfig: kubeconfig, Namespace: o.ArgoNamespace, Out: o.Out,
		RequeueTime: o.ArgoRequeueTime,
	}); err != nil {
		return nil, err
	}
	ok = true
	return c, nil
}

// Check tells whether the processes still run.
func (c *Cluster) Check() error {
	var errs []error
	for _, p := range []*Process{c.argo, c.kcm} {
		if p == nil {
			continue
		}
		if exited, err := p.Exited(); exited {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Stop stops the workflow-controller, the Kubelet (killing the step
// containers) and kube-controller-manager.
func (c *Cluster) Stop() {
	c.argo.Stop()
	if c.Kubelet != nil {
		c.Kubelet.Stop()
	}
	c.kcm.Stop()
}

// syncWriter writes whole lines to w, one at a time.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) line(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, _ = io.WriteString(s.w, l+"\n")
}
