package argorunner

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Runner runs the resource steps of Workflows in one namespace.
type Runner struct {
	// RetryDelay replaces every retryStrategy.backoff: the fixed wait between
	// two attempts of a step (default 100ms). Argo's real backoff (seconds to
	// minutes) would make tests slow; the number of attempts is Argo's.
	RetryDelay time.Duration
	// PollInterval is how often Start lists Workflows (default 200ms).
	PollInterval time.Duration

	client     client.Client
	namespace  string
	kubectl    string
	kubeconfig string

	once    sync.Once
	stepCfg string
	stepErr error
	mu      sync.Mutex
	started map[types.UID]bool
}

// New returns a Runner for Workflows in argoNamespace. c reads and updates
// Workflows and WorkflowTemplates (its scheme must include Argo's wfv1
// types). Steps run kubectlPath with kubeconfigPath: the identity of the
// steps, normally the provisioner service account.
func New(c client.Client, argoNamespace, kubectlPath, kubeconfigPath string) *Runner {
	return &Runner{
		client:     c,
		namespace:  argoNamespace,
		kubectl:    kubectlPath,
		kubeconfig: kubeconfigPath,
		started:    map[types.UID]bool{},
	}
}

func (r *Runner) retryDelay() time.Duration {
	if r.RetryDelay > 0 {
		return r.RetryDelay
	}
	return 100 * time.Millisecond
}

// Start runs every Workflow of the namespace whose phase is empty, once each,
// until ctx ends. It satisfies controller-runtime's manager.Runnable.
func (r *Runner) Start(ctx context.Context) error {
	interval := r.PollInterval
	if interval <= 0 {
		interval = 200 * time.Millisecond
	}
	logger := logr.FromContextOrDiscard(ctx).WithName("argorunner")
	var wg sync.WaitGroup
	defer wg.Wait()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		list := &wfv1.WorkflowList{}
		if err := r.client.List(ctx, list, client.InNamespace(r.namespace)); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			logger.Error(err, "listing workflows")
		}
		for i := range list.Items {
			wf := &list.Items[i]
			if wf.Status.Phase != wfv1.WorkflowUnknown || !r.claim(wf.UID) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := r.run(ctx, wf); err != nil && ctx.Err() == nil {
					logger.Error(err, "running workflow", "workflow", wf.Name)
				}
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (r *Runner) claim(uid types.UID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started[uid] {
		return false
	}
	r.started[uid] = true
	return true
}

// RunOnce runs wf to completion and records the outcome in its status. The
// returned error is about the runner itself (for example the status could
// not be written); a Workflow that fails is not an error.
func (r *Runner) RunOnce(ctx context.Context, wf *wfv1.Workflow) error {
	if !r.claim(wf.UID) {
		return fmt.Errorf("workflow %s/%s was already run", wf.Namespace, wf.Name)
	}
	return r.run(ctx, wf)
}

func (r *Runner) run(ctx context.Context, wf *wfv1.Workflow) error {
	kubeconfig, err := r.stepKubeconfig()
	if err != nil {
		return err
	}
	x := &execution{runner: r, wf: wf.DeepCopy(), kubeconfig: kubeconfig, nodes: wfv1.Nodes{}}
	return x.run(ctx)
}

// stepKubeconfig writes a copy of the kubeconfig whose current context
// defaults to the Argo namespace, as the in-cluster configuration of a step
// pod in that namespace would.
func (r *Runner) stepKubeconfig() (string, error) {
	r.once.Do(func() {
		cfg, err := clientcmd.LoadFromFile(r.kubeconfig)
		if err != nil {
			r.stepErr = fmt.Errorf("reading kubeconfig %s: %w", r.kubeconfig, err)
			return
		}
		ctxName := cfg.CurrentContext
		kctx, ok := cfg.Contexts[ctxName]
		if !ok {
			r.stepErr = fmt.Errorf("kubeconfig %s has no current context", r.kubeconfig)
			return
		}
		kctx.Namespace = r.namespace
		dir, err := os.MkdirTemp("", "argorunner-")
		if err != nil {
			r.stepErr = err
			return
		}
		path := filepath.Join(dir, "kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			r.stepErr = err
			return
		}
		r.stepCfg = path
	})
	return r.stepCfg, r.stepErr
}

// writeStatus replaces the Workflow's status with status, retrying on
// conflicts. Argo's Workflow CRD has no status subresource, so this is a
// plain update of the object.
func (r *Runner) writeStatus(ctx context.Context, key client.ObjectKey, status *wfv1.WorkflowStatus) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := &wfv1.Workflow{}
		if err := r.client.Get(ctx, key, cur); err != nil {
			return err
		}
		cur.Status = *status.DeepCopy()
		return r.client.Update(ctx, cur)
	})
	if apierrors.IsNotFound(err) {
		return errWorkflowGone
	}
	return err
}

var errWorkflowGone = errors.New("the workflow was deleted")

func now() metav1.Time { return metav1.Time{Time: time.Now().UTC().Truncate(time.Second)} }
