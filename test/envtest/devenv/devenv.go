package devenv

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

// A Person is one of the walkthrough's users: a kubeconfig context of the same
// name authenticates as Name with Groups (the API server adds
// system:authenticated).
type Person struct {
	Name   string
	Groups []string
}

// People are the contexts of the dev kubeconfig; admin is the current one.
var People = []Person{
	{Name: "admin", Groups: []string{"system:masters"}},
	{Name: "alice", Groups: []string{"team-payments"}},
	{Name: "bob", Groups: []string{"team-search"}},
}

// Files in the state directory.
const (
	// KubeconfigFile holds the contexts of People.
	KubeconfigFile = "kubeconfig"
	// LogFile receives nsprov's logs.
	LogFile = "nsprov.log"
	// DecisionLogFile receives nsprov's decision log, a JSON line per
	// admission decision.
	DecisionLogFile = "decisions.log"
	// processesFile records the control-plane processes of the running
	// environment, so the next start can stop them if this one was killed.
	processesFile = "processes"
	// tmpDir holds the control plane's data; it is removed on stop and on
	// the next start.
	tmpDir = "tmp"
	// mountsDir holds the ConfigMaps the chart's pod mounts, as local
	// directories; it is removed on stop.
	mountsDir = "mounts"
)

// Options configure the dev environment.
type Options struct {
	// StateDir receives the kubeconfig, the logs and the control plane's
	// temporary files.
	StateDir string
	// PolicyDir replaces the embedded policy bundle and is watched for edits.
	PolicyDir string
}

// Namespace is where the chart is installed, as `helm install -n` would.
const Namespace = "nsprov-system"

// Env is a running dev environment.
type Env struct {
	// Config is an admin (system:masters) configuration.
	Config *rest.Config
	// Client is an admin client.
	Client client.Client
	// Kubeconfig is the path of the kubeconfig with a context per person.
	Kubeconfig string

	stateDir string
	cp       *crenvtest.Environment
	log      *os.File
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	served   chan int // the exit code of nsprov serve
	cluster  *cluster.Cluster
}

// Start cleans up what a killed earlier run left in the state directory,
// starts etcd and kube-apiserver, installs the chart's objects, and runs
// `nsprov serve` with the chart's arguments and the local runner of the
// workflow's steps; it returns once the API server reaches the webhooks.
func Start(ctx context.Context, o Options) (*Env, error) {
	if o.StateDir == "" {
		return nil, errors.New("devenv: a state directory is required")
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := stopStale(stateDir); err != nil {
		return nil, err
	}
	// The control plane keeps its data in temporary directories; keep them
	// in the state directory so that none outlives the environment.
	tmp := filepath.Join(stateDir, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return nil, err
	}
	logFile, err := os.Create(filepath.Join(stateDir, LogFile))
	if err != nil {
		return nil, err
	}
	// controller-runtime's own logs (envtest, the webhook server) go to the
	// log file too; serve's logger writes there as well.
	crlog.SetLogger(zap.New(zap.WriteTo(logFile), zap.ConsoleEncoder()))
	// So do the webhook server's TLS handshake errors, which net/http logs
	// with the standard logger.
	stdlog.SetOutput(logFile)
	assets, err := envtest.AssetsDir()
	if err != nil {
		return nil, err
	}
	cp, err := envtest.NewControlPlane(assets)
	if err != nil {
		return nil, err
	}
	// Self-managed certificates need no cert-manager; its six CRDs would
	// only slow the start.
	cp.CRDInstallOptions.Paths = slices.DeleteFunc(cp.CRDInstallOptions.Paths, func(p string) bool {
		return strings.Contains(p, "cert-manager")
	})
	e := &Env{stateDir: stateDir, cp: cp, log: logFile, Kubeconfig: filepath.Join(stateDir, KubeconfigFile), served: make(chan int, 1)}
	ok := false
	defer func() {
		if !ok {
			_ = e.Stop()
		}
	}()
	if e.Config, err = cp.Start(); err != nil {
		return nil, fmt.Errorf("starting the control plane from %s: %w", assets, err)
	}
	if e.Client, err = client.New(e.Config, client.Options{Scheme: envtest.Scheme}); err != nil {
		return nil, err
	}
	if err := recordProcesses(filepath.Join(stateDir, processesFile)); err != nil {
		return nil, err
	}
	port, err := envtest.FreePort()
	if err != nil {
		return nil, err
	}
	deployment, err := e.installChart(ctx, port)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	if err := e.serve(runCtx, deployment, port, o.PolicyDir); err != nil {
		return nil, err
	}
	if err := e.waitForWebhooks(ctx); err != nil {
		return nil, err
	}
	if err := e.startArgo(ctx, assets); err != nil {
		return nil, err
	}
	if err := e.writeKubeconfig(); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// values are the chart values of the dev environment: alice's and bob's
// teams may request namespaces.
func values() map[string]any {
	return map[string]any{
		"requester": map[string]any{"enabled": true, "groups": []any{"team-payments", "team-search"}},
	}
}

// installChart creates the namespaces a `helm install -n nsprov-system
// --create-namespace` on a cluster with Argo Workflows has, then every object
// the chart renders but the Deployment and its PodDisruptionBudget (no
// kubelet runs them; serve runs in process instead). The webhook
// configurations call the local webhook port instead of the Service. It
// returns the Deployment, whose arguments serve uses.
func (e *Env) installChart(ctx context.Context, port int) (*unstructured.Unstructured, error) {
	objs, err := chartrender.Render(values(), Namespace)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{Namespace, envtest.ArgoNamespace} {
		if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return nil, fmt.Errorf("creating namespace %s: %w", name, err)
		}
	}
	var deployment *unstructured.Unstructured
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Deployment":
			deployment = obj
			continue
		case "PodDisruptionBudget":
			continue
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			if err := CallURL(obj, "https://127.0.0.1:"+strconv.Itoa(port)); err != nil {
				return nil, err
			}
		}
		if err := e.Client.Create(ctx, obj); err != nil {
			return nil, fmt.Errorf("installing %s %s from the chart: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if deployment == nil {
		return nil, errors.New("the chart rendered no Deployment")
	}
	// The ConfigMaps the pod mounts (the chart's config/install.yaml) as
	// local directories.
	if err := chartrender.Localize(deployment, objs, filepath.Join(e.stateDir, mountsDir)); err != nil {
		return nil, err
	}
	return deployment, nil
}

// CallURL points every webhook of a rendered webhook configuration at
// base (such as https://127.0.0.1:9443) with the path of its Service
// reference, as envtest does for its own webhooks.
func CallURL(obj *unstructured.Unstructured, base string) error {
	hooks, _, err := unstructured.NestedSlice(obj.Object, "webhooks")
	if err != nil {
		return err
	}
	for i, h := range hooks {
		hook, _ := h.(map[string]any)
		path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		if path == "" {
			return fmt.Errorf("webhook %v of %s has no service path", hook["name"], obj.GetName())
		}
		unstructured.RemoveNestedField(hook, "clientConfig", "service")
		if err := unstructured.SetNestedField(hook, base+path, "clientConfig", "url"); err != nil {
			return err
		}
		hooks[i] = hook
	}
	return unstructured.SetNestedSlice(obj.Object, hooks, "webhooks")
}

// ServeArgs are the arguments of the first container of the chart's
// Deployment, which runs `nsprov serve`.
func ServeArgs(deployment *unstructured.Unstructured) ([]string, error) {
	containers, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		return nil, fmt.Errorf("the chart's Deployment has no containers: %v", err)
	}
	c, _ := containers[0].(map[string]any)
	args, _, err := unstructured.NestedStringSlice(c, "args")
	if err != nil || len(args) == 0 || args[0] != "serve" {
		return nil, fmt.Errorf("the chart's Deployment does not run `nsprov serve`: args %q", args)
	}
	return args, nil
}

// serve runs `nsprov serve` in process with the arguments of the chart's
// Deployment, as nsprov's service account, adjusted to a process on this
// machine: local addresses, a kubeconfig, the certificate valid for
// 127.0.0.1, and the policy directory.
func (e *Env) serve(ctx context.Context, deployment *unstructured.Unstructured, port int, policyDir string) error {
	args, err := ServeArgs(deployment)
	if err != nil {
		return err
	}
	kubeconfig, err := e.userKubeconfigFile(ServiceAccount, "system:serviceaccounts", "system:serviceaccounts:"+Namespace)
	if err != nil {
		return err
	}
	metricsPort, err := envtest.FreePort()
	if err != nil {
		return err
	}
	probePort, err := envtest.FreePort()
	if err != nil {
		return err
	}
	// Later flags win over the chart's.
	args = append(args,
		"--kubeconfig="+kubeconfig,
		"--webhook-host=127.0.0.1",
		"--webhook-port="+strconv.Itoa(port),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(probePort),
		"--cert-namespace="+Namespace,
		"--cert-hosts=127.0.0.1",
		"--leader-election-namespace="+Namespace,
		"--decision-log="+filepath.Join(e.stateDir, DecisionLogFile),
		"--log-format=text",
	)
	if policyDir != "" {
		args = append(args, "--policy-dir="+policyDir, "--policy-poll-interval=200ms")
	}
	// The Deployment gives nsprov its pod's name and namespace this way.
	for k, v := range map[string]string{"POD_NAMESPACE": Namespace, "POD_NAME": "nsprov-dev"} {
		if err := os.Setenv(k, v); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.log, "nsprov dev: running nsprov %s\n", strings.Join(args, " "))
	e.wg.Go(func() {
		e.served <- app.Run(ctx, args, strings.NewReader(""), e.log, e.log)
	})
	return nil
}

// waitForWebhooks waits until the API server gets nsprov's answer to a
// request only nsprov denies: a bare namespace (dry run) from a requester
// who is no admin.
func (e *Env) waitForWebhooks(ctx context.Context) error {
	cfg, err := envtest.UserConfig(e.cp, "nsprov-dev-probe", People[1].Groups...)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "probe-dev"}}
		err := c.Create(ctx, ns, client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "request-required") {
			// What the chart's nsprov-activate hook does next.
			return activateWebhooks(ctx, e.Config)
		}
		select {
		case code := <-e.served:
			e.served <- code
			return fmt.Errorf("nsprov serve exited with code %d; see %s", code, filepath.Join(e.stateDir, LogFile))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server does not reach nsprov's webhooks after 2 minutes (last answer: %v); see %s", err, filepath.Join(e.stateDir, LogFile))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ServiceAccount is the username of nsprov's service account, as the chart
// installs it.
const ServiceAccount = "system:serviceaccount:" + Namespace + ":nsprov"

// userKubeconfigFile writes a kubeconfig for a user into the temporary
// directory and returns its path.
func (e *Env) userKubeconfigFile(name string, groups ...string) (string, error) {
	data, err := envtest.UserKubeconfig(e.cp, name, groups...)
	if err != nil {
		return "", err
	}
	path := filepath.Join(e.stateDir, tmpDir, strings.NewReplacer(":", "-").Replace(name)+".kubeconfig")
	return path, os.WriteFile(path, data, 0o600)
}

// writeKubeconfig writes one kubeconfig with a context, user and the cluster
// for each person.
func (e *Env) writeKubeconfig() error {
	out := clientcmdapi.NewConfig()
	for _, p := range People {
		data, err := envtest.UserKubeconfig(e.cp, p.Name, p.Groups...)
		if err != nil {
			return err
		}
		kc, err := clientcmd.Load(data)
		if err != nil {
			return fmt.Errorf("reading the kubeconfig of %s: %w", p.Name, err)
		}
		kctx, ok := kc.Contexts[kc.CurrentContext]
		if !ok {
			return fmt.Errorf("the kubeconfig of %s has no current context", p.Name)
		}
		out.Clusters["nsprov-dev"] = kc.Clusters[kctx.Cluster]
		out.AuthInfos[p.Name] = kc.AuthInfos[kctx.AuthInfo]
		out.Contexts[p.Name] = &clientcmdapi.Context{Cluster: "nsprov-dev", AuthInfo: p.Name}
	}
	out.CurrentContext = People[0].Name
	return clientcmd.WriteToFile(*out, e.Kubeconfig)
}

// Stop stops nsprov, the runner and the control plane, and removes the
// kubeconfig and the temporary files; the logs stay.
func (e *Env) Stop() error {
	var err error
	if e.cancel != nil {
		e.cancel()
	}
	// Let the in-process parts finish before their API server goes away.
	if !envtest.WaitGroupTimeout(&e.wg, 30*time.Second) {
		err = errors.New("nsprov serve or the runner did not stop within 30 seconds")
	}
	if e.cluster != nil {
		e.cluster.Stop()
	}
	if e.cp != nil {
		err = errors.Join(err, e.cp.Stop())
	}
	for _, name := range []string{KubeconfigFile, processesFile, tmpDir, mountsDir} {
		if rmErr := os.RemoveAll(filepath.Join(e.stateDir, name)); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}
	if e.log != nil {
		err = errors.Join(err, e.log.Close())
	}
	return err
}

// activateWebhooks sets the failurePolicy the chart's values ask for
// (annotation nsprov.io/failure-policy) on both webhook configurations, as
// the chart's nsprov-activate hook does once nsprov answers.
func activateWebhooks(ctx context.Context, cfg *rest.Config) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	m, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "nsprov", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("activating the webhooks: %w", err)
	}
	policy := m.Annotations["nsprov.io/failure-policy"]
	if policy == "" {
		return errors.New("activating the webhooks: the chart's webhook configuration has no nsprov.io/failure-policy annotation")
	}
	return app.SetWebhookFailurePolicy(ctx, cs, "nsprov", admissionregistrationv1.FailurePolicyType(policy))
}
