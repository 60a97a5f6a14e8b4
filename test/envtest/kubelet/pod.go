package kubelet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
)

// maxMessage is the longest termination message kept, as a kubelet's.
const maxMessage = 4096

// podRun is the run of one Pod.
type podRun struct {
	k      *Kubelet
	pod    *corev1.Pod
	logger logr.Logger
	dir    string

	mu     sync.Mutex
	status corev1.PodStatus
}

// run runs the Pod's containers and reports its status. It returns when the
// Pod has ended, or when podCtx ends (its processes are then killed).
func (r *podRun) run(podCtx, ctx context.Context) {
	now := metav1.Now()
	r.status = corev1.PodStatus{
		Phase: corev1.PodPending, StartTime: &now, HostIP: "127.0.0.1", PodIP: "127.0.0.1",
		HostIPs: []corev1.HostIP{{IP: "127.0.0.1"}}, PodIPs: []corev1.PodIP{{IP: "127.0.0.1"}},
	}
	for _, c := range r.pod.Spec.InitContainers {
		r.status.InitContainerStatuses = append(r.status.InitContainerStatuses, waiting(c, "PodInitializing"))
	}
	for _, c := range r.pod.Spec.Containers {
		r.status.ContainerStatuses = append(r.status.ContainerStatuses, waiting(c, "PodInitializing"))
	}
	if err := validatePod(r.pod); err != nil {
		r.logger.Error(err, "refusing the pod")
		r.status.Phase, r.status.Reason, r.status.Message = corev1.PodFailed, "Unsupported", "kubelet: "+err.Error()
		r.write(ctx)
		return
	}
	kubeconfig, err := r.prepare(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.logger.Error(err, "preparing the pod")
			r.status.Phase, r.status.Reason, r.status.Message = corev1.PodFailed, "KubeletError", "kubelet: "+err.Error()
			r.write(ctx)
		}
		return
	}
	r.write(ctx)

	for i, c := range r.pod.Spec.InitContainers {
		r.setRunning(&r.status.InitContainerStatuses[i])
		r.write(ctx)
		state := r.runContainer(podCtx, c, kubeconfig)
		r.setTerminated(&r.status.InitContainerStatuses[i], state)
		if state.ExitCode != 0 || podCtx.Err() != nil {
			r.status.Phase = corev1.PodFailed
			for j, c := range r.pod.Spec.Containers {
				r.status.ContainerStatuses[j] = waiting(c, "PodInitializing")
			}
			r.write(ctx)
			return
		}
		r.write(ctx)
	}

	r.mu.Lock()
	r.status.Phase = corev1.PodRunning
	for i := range r.status.ContainerStatuses {
		r.setRunning(&r.status.ContainerStatuses[i])
	}
	r.mu.Unlock()
	r.write(ctx)
	var wg sync.WaitGroup
	for i, c := range r.pod.Spec.Containers {
		wg.Go(func() {
			state := r.runContainer(podCtx, c, kubeconfig)
			r.mu.Lock()
			r.setTerminated(&r.status.ContainerStatuses[i], state)
			r.mu.Unlock()
			r.write(ctx)
		})
	}
	wg.Wait()
	r.mu.Lock()
	r.status.Phase = corev1.PodSucceeded
	for _, s := range r.status.ContainerStatuses {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			r.status.Phase = corev1.PodFailed
		}
	}
	r.mu.Unlock()
	r.write(ctx)
}

func waiting(c corev1.Container, reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{
		Name: c.Name, Image: c.Image, ImageID: c.Image,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}},
	}
}

func (r *podRun) setRunning(s *corev1.ContainerStatus) {
	s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}
	s.Started, s.Ready = ptr.To(true), true
}

func (r *podRun) setTerminated(s *corev1.ContainerStatus, state *corev1.ContainerStateTerminated) {
	if s.State.Running != nil {
		state.StartedAt = s.State.Running.StartedAt
	}
	s.State = corev1.ContainerState{Terminated: state}
	s.Started, s.Ready = ptr.To(false), false
	s.ContainerID = "process://" + string(r.pod.UID) + "/" + s.Name
}

// write reports the Pod's status; a Pod that is gone is not an error.
func (r *podRun) write(ctx context.Context) {
	r.mu.Lock()
	status := r.status.DeepCopy()
	r.mu.Unlock()
	if err := r.k.writeStatus(ctx, r.pod, status); err != nil && !apierrors.IsNotFound(err) && ctx.Err() == nil {
		r.logger.Error(err, "writing the pod status")
	}
}

// prepare makes the Pod's volumes and its kubeconfig, and returns the latter.
func (r *podRun) prepare(ctx context.Context) ([]byte, error) {
	for _, v := range r.pod.Spec.Volumes {
		if err := mkdir(filepath.Join(r.dir, "volumes", v.Name), 0o777); err != nil {
			return nil, err
		}
	}
	sa := r.pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := r.k.client.CoreV1().ServiceAccounts(r.pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: r.pod.Name, UID: r.pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token of service account %s/%s: %w", r.pod.Namespace, sa, err)
	}
	cfg := r.k.opts.Config
	cluster := &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	if len(cfg.CAData) == 0 && cfg.CAFile != "" {
		if cluster.CertificateAuthorityData, err = os.ReadFile(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["cluster"] = cluster
	kc.AuthInfos["pod"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["pod"] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "pod", Namespace: r.pod.Namespace}
	kc.CurrentContext = "pod"
	return clientcmd.Write(*kc)
}

// runContainer runs one container to its end, or until ctx ends.
func (r *podRun) runContainer(ctx context.Context, c corev1.Container, kubeconfig []byte) *corev1.ContainerStateTerminated {
	fail := func(reason string, err error) *corev1.ContainerStateTerminated {
		r.logger.Error(err, "starting a container", "container", c.Name)
		return &corev1.ContainerStateTerminated{ExitCode: 128, Reason: reason, Message: err.Error(), FinishedAt: metav1.Now()}
	}
	env, err := containerEnv(r.pod, c)
	if err != nil {
		return fail("CreateContainerConfigError", err)
	}
	sc := effectiveSecurity(r.pod, c)
	if ptr.Deref(sc.runAsNonRoot, false) && ptr.Deref(sc.runAsUser, int64(os.Geteuid())) == 0 {
		return fail("CreateContainerConfigError", errors.New("container has runAsNonRoot and image will run as root"))
	}
	cdir := filepath.Join(r.dir, "containers", c.Name)
	if err := r.containerDirs(cdir, c); err != nil {
		return fail("CreateContainerError", err)
	}
	if err := os.WriteFile(filepath.Join(cdir, "run", kubeconfigDir, "kubeconfig"), kubeconfig, 0o644); err != nil {
		return fail("CreateContainerError", err)
	}
	env = append(env, "KUBECONFIG="+kubeconfigPath)
	if !hasEnv(env, "PATH") {
		env = append(env, "PATH="+r.k.path)
	}
	if !hasEnv(env, "HOSTNAME") {
		env = append(env, "HOSTNAME="+r.pod.Name)
	}
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME=/") // as container runtimes set it for a user without a home
	}
	argv := expandCommand(append(slices.Clone(c.Command), c.Args...), env)
	script := r.script(cdir, c, sc)

	log, err := os.Create(filepath.Join(cdir, "log"))
	if err != nil {
		return fail("CreateContainerError", err)
	}
	defer log.Close()
	cmd := exec.Command(r.k.tools.unshare, append([]string{
		"--mount", "--propagation=private", "--pid", "--fork", "--mount-proc", "--kill-child=SIGKILL",
		"--", r.k.tools.sh, "-c", script, "container",
	}, argv...)...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, so that it can be signalled as a whole; killed
	// with the Kubelet's process (unshare's --kill-child then takes the
	// container's PID namespace with it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail("StartError", err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(r.killGrace()):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	state := &corev1.ContainerStateTerminated{FinishedAt: metav1.Now(), Reason: "Completed"}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			state.ExitCode, state.Signal = 128+int32(ws.Signal()), int32(ws.Signal())
		} else {
			state.ExitCode = int32(exitErr.ExitCode())
		}
		state.Reason = "Error"
	default:
		return fail("StartError", err)
	}
	msg, _ := os.ReadFile(filepath.Join(cdir, "dev", "termination-log"))
	if len(msg) == 0 && state.ExitCode != 0 && c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError {
		msg = tail(filepath.Join(cdir, "log"), 80)
	}
	if len(msg) > maxMessage {
		msg = msg[len(msg)-maxMessage:]
	}
	state.Message = string(msg)
	if state.ExitCode != 0 && ctx.Err() == nil {
		r.logger.Info("container failed", "container", c.Name, "exitCode", state.ExitCode, "output", string(tail(filepath.Join(cdir, "log"), 20)))
	}
	return state
}

func (r *podRun) killGrace() time.Duration {
	d := r.k.opts.KillGrace
	if g := r.pod.Spec.TerminationGracePeriodSeconds; g != nil && time.Duration(*g)*time.Second < d {
		d = time.Duration(*g) * time.Second
	}
	return d
}

// Where a container finds its kubeconfig: in its private /run.
const (
	kubeconfigDir  = "nsprov-kubelet"
	kubeconfigPath = "/run/" + kubeconfigDir + "/kubeconfig"
)

// devices are bound from the machine's /dev into a container's private /dev.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// containerDirs makes a container's private /dev, /run and /tmp, and the
// mount points of its volumes under /run.
func (r *podRun) containerDirs(cdir string, c corev1.Container) error {
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"dev", 0o755}, {"run", 0o755}, {"run/" + kubeconfigDir, 0o755}, {"tmp", 0o777 | os.ModeSticky}} {
		if err := mkdir(filepath.Join(cdir, d.path), d.mode); err != nil {
			return err
		}
	}
	for _, name := range append(slices.Clone(devices), "termination-log") {
		f, err := os.OpenFile(filepath.Join(cdir, "dev", name), os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		_ = f.Close()
		if err := os.Chmod(f.Name(), 0o666); err != nil {
			return err
		}
	}
	for link, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(cdir, "dev", link)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	for _, m := range c.VolumeMounts {
		if base, rest, _ := privatePath(m.MountPath); rest != "" {
			if err := mkdir(filepath.Join(cdir, base, rest), 0o755); err != nil {
				return err
			}
		}
		if err := mkdir(r.volumeDir(m), 0o777); err != nil {
			return err
		}
	}
	return nil
}

// volumeDir is where a volume mount's files are: the volume's directory, or
// its subPath.
func (r *podRun) volumeDir(m corev1.VolumeMount) string {
	return filepath.Join(r.dir, "volumes", m.Name, filepath.Clean("/"+m.SubPath))
}

// privatePath tells whether path lies in a container's private /run (or
// /var/run) or /tmp, which one (base "run" or "tmp") and where in it.
func privatePath(path string) (base, rest string, ok bool) {
	path = filepath.Clean(path)
	for _, p := range []struct{ prefix, base string }{{"/var/run", "run"}, {"/run", "run"}, {"/tmp", "tmp"}} {
		if path == p.prefix {
			return p.base, "", true
		}
		if rest, ok := strings.CutPrefix(path, p.prefix+"/"); ok {
			return p.base, rest, true
		}
	}
	return "", "", false
}

// script is the shell program that sets up a container's mount namespace and
// then runs its command ("$@") as its user. The private /dev, /run and /tmp
// are directories of the container's, with the devices and volumes bound in
// them, bound over the machine's; /tmp goes after the others, as the state
// directory may be in it.
func (r *podRun) script(cdir string, c corev1.Container, sc security) string {
	var b strings.Builder
	m := q(r.k.tools.mount)
	b.WriteString("set -e\n")
	for _, d := range devices {
		fmt.Fprintf(&b, "%s --bind %s %s\n", m, q("/dev/"+d), q(filepath.Join(cdir, "dev", d)))
	}
	for _, vm := range c.VolumeMounts {
		base, rest, _ := privatePath(vm.MountPath)
		dst := q(filepath.Join(cdir, base, rest))
		fmt.Fprintf(&b, "%s --bind %s %s\n", m, q(r.volumeDir(vm)), dst)
		if vm.ReadOnly {
			fmt.Fprintf(&b, "%s -o remount,bind,ro %s\n", m, dst)
		}
	}
	// The directories of Options.Path that lie in /tmp or /run (a checkout
	// under /tmp, say) stay visible, read-only, at the same place.
	for _, dir := range r.k.opts.Path {
		base, rest, ok := privatePath(dir)
		if !ok {
			continue
		}
		dst := q(filepath.Join(cdir, base, rest))
		fmt.Fprintf(&b, "mkdir -p %s\n", dst)
		fmt.Fprintf(&b, "%s --bind %s %s\n", m, q(dir), dst)
		fmt.Fprintf(&b, "%s -o remount,bind,ro %s\n", m, dst)
	}
	fmt.Fprintf(&b, "%s --rbind %s /dev\n", m, q(filepath.Join(cdir, "dev")))
	fmt.Fprintf(&b, "%s --rbind %s /run\n", m, q(filepath.Join(cdir, "run")))
	fmt.Fprintf(&b, "%s --rbind %s /tmp\n", m, q(filepath.Join(cdir, "tmp")))
	// Last: a bind mount made from a read-only mount would be read-only.
	if ptr.Deref(sc.readOnlyRootFilesystem, false) {
		fmt.Fprintf(&b, "%s -o remount,bind,ro /\n", m)
	}
	wd := c.WorkingDir
	if wd == "" {
		wd = "/"
	}
	fmt.Fprintf(&b, "cd %s\n", q(wd))
	var priv []string
	if sc.runAsUser != nil || sc.runAsGroup != nil {
		priv = append(priv,
			fmt.Sprintf("--reuid=%d", ptr.Deref(sc.runAsUser, int64(os.Geteuid()))),
			fmt.Sprintf("--regid=%d", ptr.Deref(sc.runAsGroup, 0)))
		if len(sc.supplementalGroups) > 0 {
			groups := make([]string, len(sc.supplementalGroups))
			for i, g := range sc.supplementalGroups {
				groups[i] = fmt.Sprint(g)
			}
			priv = append(priv, "--groups="+strings.Join(groups, ","))
		} else {
			priv = append(priv, "--clear-groups")
		}
	}
	if sc.allowPrivilegeEscalation != nil && !*sc.allowPrivilegeEscalation {
		priv = append(priv, "--no-new-privs")
	}
	if sc.dropAll {
		priv = append(priv, "--inh-caps=-all", "--bounding-set=-all")
	}
	if len(priv) == 0 {
		b.WriteString("exec \"$@\"\n")
	} else {
		fmt.Fprintf(&b, "exec %s %s -- \"$@\"\n", q(r.k.tools.setpriv), strings.Join(priv, " "))
	}
	return b.String()
}

// q quotes s for the shell.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func mkdir(path string, mode os.FileMode) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	return os.Chmod(path, mode) // not subject to the umask
}

func hasEnv(env []string, name string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return true
		}
	}
	return false
}

// tail is the last n lines of a file.
func tail(path string, n int) []byte {
	data, _ := os.ReadFile(path)
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return bytes.Join(lines, []byte("\n"))
}
