package kubelet_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/kubelet"
)

const ns = "kubelet-test"

// cluster is an API server with a Kubelet of the test's.
type cluster struct {
	cs    kubernetes.Interface
	k     *kubelet.Kubelet
	state string
}

func start(t *testing.T) *cluster {
	t.Helper()
	crlog.SetLogger(logr.Discard())
	if os.Geteuid() != 0 {
		t.Skip("the kubelet needs root for mount namespaces")
	}
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	cp := &crenvtest.Environment{BinaryAssetsDirectory: assets, ControlPlaneStartTimeout: 2 * time.Minute}
	t.Cleanup(func() { _ = cp.Stop() })
	cfg, err := cp.Start()
	if err != nil {
		t.Fatal(err)
	}
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "runner"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	// A directory of commands under /tmp, as a checkout there has: it must
	// stay visible in the containers' private /tmp.
	tools, err := os.MkdirTemp("/tmp", "nsprov-kubelet-tools-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tools) })
	if err := os.Chmod(tools, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tools, "nsprov-probe"), []byte("#!/bin/sh\necho probed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The Kubelet's logs (refused pods, failed containers' output) go to the
	// test's output.
	logger := funcr.New(func(prefix, args string) { t.Log(prefix, args) }, funcr.Options{})
	k, err := kubelet.Start(logr.NewContext(context.Background(), logger), kubelet.Options{
		Config: cfg, Namespaces: []string{ns}, Path: []string{assets, tools}, StateDir: state,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Stop)
	return &cluster{cs: cs, k: k, state: state}
}

func (c *cluster) run(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	pod.Namespace = ns
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	// No service account controller runs: there is no default one.
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = "runner"
	}
	if _, err := c.cs.CoreV1().Pods(ns).Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var got *corev1.Pod
	envtest.Eventually(t, time.Minute, "pod "+pod.Name+" ends", func() error {
		var err error
		if got, err = c.cs.CoreV1().Pods(ns).Get(t.Context(), pod.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		if got.Status.Phase != corev1.PodSucceeded && got.Status.Phase != corev1.PodFailed {
			return fmt.Errorf("phase %q", got.Status.Phase)
		}
		return nil
	})
	return got
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "ignored", Command: []string{"sh", "-c", script}}
}

func terminated(t *testing.T, s []corev1.ContainerStatus, name string) *corev1.ContainerStateTerminated {
	t.Helper()
	for _, cs := range s {
		if cs.Name == name {
			if cs.State.Terminated == nil {
				t.Fatalf("container %s has not terminated: %+v", name, cs.State)
			}
			return cs.State.Terminated
		}
	}
	t.Fatalf("no status of container %s in %+v", name, s)
	return nil
}

func TestKubelet(t *testing.T) {
	c := start(t)

	t.Run("init and main containers share an emptyDir, as the pod's user, with its env", func(t *testing.T) {
		mount := []corev1.VolumeMount{{Name: "shared", MountPath: "/var/run/argo"}}
		init := sh("init", `echo "$POD_NAME/$NS" > /var/run/argo/from-init`)
		init.Env = []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		}
		init.VolumeMounts = mount
		main := corev1.Container{
			Name: "main", Image: "ignored", Command: []string{"sh", "-c"},
			Args: []string{`set -e
test "$(id -u):$(id -g)" = "1001:0"
if touch /should-fail 2>/dev/null; then echo "the root file system is writable"; exit 1; fi
touch /tmp/ok
test "$(cat /var/run/argo/from-init)" = "$(POD)/` + ns + `"
test "$GREETING" = 'hello $(POD) $(NOPE) $$$$'
grep -q "namespace: ` + ns + `" "$KUBECONFIG"
printf '%s|$(GREETING)' "$(cat /var/run/argo/from-init)" > /dev/termination-log`},
			Env: []corev1.EnvVar{
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "GREETING", Value: "hello $(POD) $(NOPE) $$$$"},
			},
			VolumeMounts: mount,
			SecurityContext: &corev1.SecurityContext{
				ReadOnlyRootFilesystem: ptr.To(true), AllowPrivilegeEscalation: ptr.To(false),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}
		pod := c.run(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "shared"},
			Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{
					RunAsUser: ptr.To[int64](1001), RunAsNonRoot: ptr.To(true),
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Volumes:        []corev1.Volume{{Name: "shared", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
				InitContainers: []corev1.Container{init},
				Containers:     []corev1.Container{main},
			},
		})
		if pod.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("phase %s, want Succeeded; statuses %+v %+v", pod.Status.Phase, pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses)
		}
		if pod.Spec.NodeName != c.k.NodeName() {
			t.Errorf("node %q, want %q", pod.Spec.NodeName, c.k.NodeName())
		}
		if got := terminated(t, pod.Status.InitContainerStatuses, "init"); got.ExitCode != 0 || got.Reason != "Completed" {
			t.Errorf("init: %+v", got)
		}
		got := terminated(t, pod.Status.ContainerStatuses, "main")
		if want := "shared/" + ns + "|hello shared $(NOPE) $$"; got.ExitCode != 0 || got.Message != want {
			t.Errorf("main: exit %d, message %q, want 0 and %q", got.ExitCode, got.Message, want)
		}
	})

	t.Run("commands of Path under /tmp are found in the container's private /tmp", func(t *testing.T) {
		probe := sh("main", `test "$(nsprov-probe)" = probed`)
		probe.SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To[int64](1001)}
		pod := c.run(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "path-in-tmp"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{probe}},
		})
		if got := terminated(t, pod.Status.ContainerStatuses, "main"); pod.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("phase %s, exit %d, message %q: a command of Path under /tmp was not found", pod.Status.Phase, got.ExitCode, got.Message)
		}
	})

	t.Run("a failing container fails the pod with its exit code and message", func(t *testing.T) {
		pod := c.run(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "failing"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				sh("main", `echo "it broke" > /dev/termination-log; exit 3`),
				sh("other", `exit 0`),
			}},
		})
		if pod.Status.Phase != corev1.PodFailed {
			t.Fatalf("phase %s, want Failed", pod.Status.Phase)
		}
		if got := terminated(t, pod.Status.ContainerStatuses, "main"); got.ExitCode != 3 || got.Reason != "Error" || got.Message != "it broke\n" {
			t.Errorf("main: %+v, want exit 3, reason Error, message %q", got, "it broke\n")
		}
		if got := terminated(t, pod.Status.ContainerStatuses, "other"); got.ExitCode != 0 {
			t.Errorf("other: %+v", got)
		}
	})

	t.Run("a failing init container stops the pod before its containers", func(t *testing.T) {
		pod := c.run(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "failing-init"},
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{sh("init", "exit 64")},
				Containers:     []corev1.Container{sh("main", "exit 0")},
			},
		})
		if got := terminated(t, pod.Status.InitContainerStatuses, "init"); pod.Status.Phase != corev1.PodFailed || got.ExitCode != 64 {
			t.Fatalf("phase %s, init %+v; want Failed, exit 64", pod.Status.Phase, got)
		}
		if s := pod.Status.ContainerStatuses[0].State; s.Waiting == nil {
			t.Errorf("main ran after a failed init container: %+v", s)
		}
	})

	t.Run("steps run as the pod's service account", func(t *testing.T) {
		kubectl := corev1.Container{Name: "main", Image: "ignored", Command: []string{"sh", "-c",
			"kubectl auth whoami -o jsonpath='{.status.userInfo.username}' > /dev/termination-log"}}
		pod := c.run(t, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "whoami"},
			Spec:       corev1.PodSpec{ServiceAccountName: "runner", Containers: []corev1.Container{kubectl}},
		})
		got := terminated(t, pod.Status.ContainerStatuses, "main")
		if want := "system:serviceaccount:" + ns + ":runner"; pod.Status.Phase != corev1.PodSucceeded || got.Message != want {
			t.Fatalf("phase %s, message %q; want Succeeded, %q", pod.Status.Phase, got.Message, want)
		}
	})

	t.Run("what is not implemented fails the pod loudly", func(t *testing.T) {
		tests := []struct{ name, want string }{
			{"hostpath", "spec.volumes[data]: only emptyDir volumes are implemented"},
			{"envfrom", "spec.containers[main].envFrom is not implemented"},
			{"runasroot", "container has runAsNonRoot and image will run as root"},
		}
		pods := map[string]*corev1.Pod{
			"hostpath": {Spec: corev1.PodSpec{
				Volumes:    []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
				Containers: []corev1.Container{sh("main", "exit 0")},
			}},
			"envfrom": {Spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
				c := sh("main", "exit 0")
				c.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "x"}}}}
				return c
			}()}}},
			"runasroot": {Spec: corev1.PodSpec{
				SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true)},
				Containers:      []corev1.Container{sh("main", "exit 0")},
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				p := pods[tt.name]
				p.Name = tt.name
				pod := c.run(t, p)
				msg := pod.Status.Message
				if len(pod.Status.ContainerStatuses) > 0 && pod.Status.ContainerStatuses[0].State.Terminated != nil {
					msg += pod.Status.ContainerStatuses[0].State.Terminated.Message
				}
				if pod.Status.Phase != corev1.PodFailed || !strings.Contains(msg, tt.want) {
					t.Fatalf("phase %s, message %q; want Failed with %q", pod.Status.Phase, msg, tt.want)
				}
			})
		}
	})

	t.Run("deleting a running pod kills its processes and completes the deletion", func(t *testing.T) {
		marker := fmt.Sprintf("sleep %d", 7000+os.Getpid()%1000)
		if _, err := c.cs.CoreV1().Pods(ns).Create(t.Context(), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: ns},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, ServiceAccountName: "runner",
				Containers: []corev1.Container{sh("main", marker)},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, time.Minute, "the sleeper runs", func() error {
			if !running(marker) {
				return fmt.Errorf("no process %q", marker)
			}
			return nil
		})
		if err := c.cs.CoreV1().Pods(ns).Delete(t.Context(), "sleeper", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		envtest.Eventually(t, time.Minute, "the sleeper is gone", func() error {
			if _, err := c.cs.CoreV1().Pods(ns).Get(t.Context(), "sleeper", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("pod still there (%v)", err)
			}
			if running(marker) {
				return fmt.Errorf("process %q still runs", marker)
			}
			return nil
		})
	})

	t.Run("stopping leaves no state behind", func(t *testing.T) {
		c.k.Stop()
		entries, err := os.ReadDir(c.state)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Errorf("left in the state directory: %v", entries)
		}
	})
}

// running tells whether a process with this command line runs.
func running(cmdline string) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.ReplaceAll(strings.TrimRight(string(data), "\x00"), "\x00", " ") == cmdline {
			return true
		}
	}
	return false
}
