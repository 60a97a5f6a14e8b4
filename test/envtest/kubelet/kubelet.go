package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// DefaultNodeName is the node a Kubelet binds Pods to unless told otherwise.
const DefaultNodeName = "envtest-node"

// statePrefix starts the name of every Kubelet's state directory.
const statePrefix = "nsprov-kubelet-"

// Options configure a Kubelet.
type Options struct {
	// Config is the Kubelet's own identity: it lists, watches and binds Pods,
	// writes their status, deletes them and requests service account tokens.
	Config *rest.Config
	// NodeName is the node Pods are bound to (default DefaultNodeName).
	NodeName string
	// Namespaces are the namespaces whose Pods the Kubelet runs (default all).
	Namespaces []string
	// Path lists directories searched for commands before the machine's PATH.
	Path []string
	// StateDir is where the state directory is made (default os.TempDir()).
	StateDir string
	// KillGrace is how long a deleted Pod's processes have between SIGTERM
	// and SIGKILL (default 2s, at most the Pod's own grace period).
	KillGrace time.Duration
}

// Validate checks the options.
func (o *Options) Validate() error {
	if o.Config == nil {
		return errors.New("kubelet: Config is required")
	}
	return nil
}

// A Kubelet runs the Pods bound to its node as local processes.
type Kubelet struct {
	opts   Options
	client kubernetes.Interface
	tools  tools
	dir    string // state directory
	path   string // PATH of the containers

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	pods   map[types.UID]context.CancelFunc
	done   map[types.UID]bool // Pods run to the end, until they are deleted
}

// tools are the absolute paths of the programs a container is started with.
type tools struct{ unshare, setpriv, mount, sh string }

// Start starts a Kubelet, which runs until ctx ends or Stop is called, and
// returns once it watches Pods.
func Start(ctx context.Context, o Options) (*Kubelet, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.NodeName == "" {
		o.NodeName = DefaultNodeName
	}
	if o.StateDir == "" {
		o.StateDir = os.TempDir()
	}
	if o.KillGrace <= 0 {
		o.KillGrace = 2 * time.Second
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("kubelet: running containers in mount namespaces needs root")
	}
	var t tools
	for _, p := range []struct {
		name string
		dst  *string
	}{{"unshare", &t.unshare}, {"setpriv", &t.setpriv}, {"mount", &t.mount}, {"sh", &t.sh}} {
		path, err := exec.LookPath(p.name)
		if err != nil {
			return nil, fmt.Errorf("kubelet: %s (util-linux) is needed: %w", p.name, err)
		}
		*p.dst = path
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	removeStale(o.StateDir)
	dir, err := os.MkdirTemp(o.StateDir, statePrefix)
	if err != nil {
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	// Containers run as other users: they must reach their directories.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	path := slices.Clone(o.Path)
	path = append(path, filepath.SplitList(os.Getenv("PATH"))...)
	if len(path) == len(o.Path) {
		path = append(path, "/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
	}
	k := &Kubelet{
		opts: o, client: cs, tools: t, dir: dir,
		path: strings.Join(path, string(filepath.ListSeparator)),
		pods: map[types.UID]context.CancelFunc{},
		done: map[types.UID]bool{},
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	k.cancel = cancel
	go func() {
		select {
		case <-ctx.Done():
			cancel()
		case <-runCtx.Done():
		}
	}()
	factory := informers.NewSharedInformerFactory(cs, 0)
	informer := factory.Core().V1().Pods().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.observe(runCtx, obj) },
		UpdateFunc: func(_, obj any) { k.observe(runCtx, obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if pod, ok := obj.(*corev1.Pod); ok {
				k.forget(pod.UID)
			}
		},
	}); err != nil {
		cancel()
		return nil, fmt.Errorf("kubelet: %w", err)
	}
	factory.Start(runCtx.Done())
	k.wg.Go(func() { <-runCtx.Done(); factory.Shutdown() })
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		k.Stop()
		return nil, errors.New("kubelet: the Pod informer did not sync")
	}
	return k, nil
}

// NodeName is the node the Kubelet runs Pods for.
func (k *Kubelet) NodeName() string { return k.opts.NodeName }

// Stop kills every container, waits for the Pods' workers and removes the
// state directory.
func (k *Kubelet) Stop() {
	k.cancel()
	k.wg.Wait()
	_ = os.RemoveAll(k.dir)
}

// observe starts a worker for a Pod of the Kubelet's, and stops the worker of
// a Pod being deleted.
func (k *Kubelet) observe(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || !k.ours(pod) {
		return
	}
	if pod.DeletionTimestamp != nil {
		k.mu.Lock()
		stop, running := k.pods[pod.UID]
		k.mu.Unlock()
		if running {
			stop()
			return
		}
		if pod.Spec.NodeName == k.opts.NodeName {
			// A Pod deleted while no worker runs it (say, before this
			// Kubelet started): complete its deletion.
			k.wg.Go(func() { k.completeDeletion(ctx, pod) })
		}
		return
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, running := k.pods[pod.UID]; running || k.done[pod.UID] || ctx.Err() != nil {
		return
	}
	podCtx, stop := context.WithCancel(ctx)
	k.pods[pod.UID] = stop
	k.wg.Go(func() {
		defer stop()
		k.runPod(podCtx, ctx, pod.DeepCopy())
	})
}

// forget stops the worker of a Pod that is gone.
func (k *Kubelet) forget(uid types.UID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if stop, ok := k.pods[uid]; ok {
		stop()
	}
	delete(k.done, uid)
}

func (k *Kubelet) ours(pod *corev1.Pod) bool {
	if len(k.opts.Namespaces) > 0 && !slices.Contains(k.opts.Namespaces, pod.Namespace) {
		return false
	}
	switch pod.Spec.NodeName {
	case k.opts.NodeName:
		return true
	case "":
		return pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName
	default:
		return false
	}
}

// runPod binds, runs and reports one Pod. podCtx ends when the Pod is
// deleted or the Kubelet stops; ctx when the Kubelet stops.
func (k *Kubelet) runPod(podCtx, ctx context.Context, pod *corev1.Pod) {
	logger := logr.FromContextOrDiscard(ctx).WithName("kubelet").WithValues("pod", pod.Namespace+"/"+pod.Name)
	if pod.Spec.NodeName == "" {
		err := k.client.CoreV1().Pods(pod.Namespace).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: pod.Name, UID: pod.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.opts.NodeName},
		}, metav1.CreateOptions{})
		if err != nil {
			if !apierrors.IsNotFound(err) && ctx.Err() == nil {
				logger.Error(err, "binding the pod")
			}
			return
		}
		pod.Spec.NodeName = k.opts.NodeName
	}
	r := &podRun{k: k, pod: pod, logger: logger, dir: filepath.Join(k.dir, string(pod.UID))}
	defer func() { _ = os.RemoveAll(r.dir) }()
	r.run(podCtx, ctx)
	if podCtx.Err() != nil && ctx.Err() == nil {
		k.completeDeletion(ctx, pod)
	}
	k.mu.Lock()
	delete(k.pods, pod.UID)
	k.done[pod.UID] = true
	k.mu.Unlock()
}

// completeDeletion deletes a Pod whose deletion was requested, with grace
// period 0, as a kubelet does once the Pod's containers are gone.
func (k *Kubelet) completeDeletion(ctx context.Context, pod *corev1.Pod) {
	cur, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil || cur.UID != pod.UID || cur.DeletionTimestamp == nil {
		return
	}
	uid := pod.UID
	err = k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && ctx.Err() == nil {
		logr.FromContextOrDiscard(ctx).Error(err, "completing the deletion of a pod", "pod", pod.Namespace+"/"+pod.Name)
	}
}

// writeStatus replaces the Pod's status with status, retrying on conflicts.
func (k *Kubelet) writeStatus(ctx context.Context, pod *corev1.Pod, status *corev1.PodStatus) error {
	// A kubelet's status must land even when the Pod's controller keeps
	// patching it (conflicts) or the API server is slow: a Pod whose end is
	// never reported stalls its Workflow. Only a Pod that is gone stops it.
	backoff := wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 40, Cap: 2 * time.Second}
	return retry.OnError(backoff, func(err error) bool { return !apierrors.IsNotFound(err) && ctx.Err() == nil }, func() error {
		cur, err := k.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != pod.UID {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		qos := cur.Status.QOSClass // set by the API server, immutable
		cur.Status = *status.DeepCopy()
		cur.Status.QOSClass = qos
		_, err = k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
}

// removeStale removes the state directories of Kubelets whose process is gone
// (a test binary that was killed).
func removeStale(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, statePrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, "pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}
