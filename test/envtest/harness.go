package envtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	certmanagerv1 "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/internal/trigger"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

// Options configure the harness.
type Options struct {
	// PolicyDir replaces the embedded policy bundle, and is watched for changes.
	PolicyDir string
	// Logger receives the webhook server's logs (default: discarded).
	Logger logr.Logger
	// Recorder receives every admission decision (default: logged to Logger).
	Recorder admission.Recorder
	// NoRunner runs no Argo (workflow-controller, process kubelet,
	// kube-controller-manager): Workflows are created but never run. The
	// audit suite uses it: it tests admission records and the background
	// audit, which never wait for a provisioning, and saves the processes.
	NoRunner bool
	// ArgoConfig is added to the workflow-controller's ConfigMap before Argo
	// starts (Argo reads some settings, such as "parallelism", only then).
	ArgoConfig map[string]string
	// DeferController runs the server the API server calls without the
	// provisioning controller; the test starts it with StartController
	// (measurements of a controller facing a backlog).
	DeferController bool
	// DeferArgo installs Argo's configuration but starts its processes only
	// when the test calls StartArgo (measurements of nsprov alone on the
	// API server, without Argo's steps running on the same machine).
	DeferArgo bool
	// ServerArgs are added to the flags of every nsprov server the harness
	// runs, after the harness's own, so they win (the provisioning pace,
	// say).
	ServerArgs []string
	// WrapTransport, when set, wraps the transport of every nsprov server the
	// harness runs (to count its API requests, say).
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// Env is a running control plane with nsprov's webhooks registered.
type Env struct {
	// Config is an admin (system:masters) configuration.
	Config *rest.Config
	// Client is an admin client.
	Client client.Client
	// Policies is the policy store of the server the API server calls.
	Policies *policy.Store

	env     *crenvtest.Environment
	opts    Options
	cancel  context.CancelFunc
	wg      sync.WaitGroup   // nsprov's servers
	cluster *cluster.Cluster // Argo, the process kubelet, kube-controller-manager
	assets  string           // the control-plane binaries, for StartArgo
}

// Scheme is the scheme of the harness's clients.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := wfv1.AddToScheme(s); err != nil {
		panic(err)
	}
	// The harness installs cert-manager's and OpenReports' CRDs from these
	// modules; their types let tests read those objects typed.
	if err := certmanagerv1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := reportsv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// AssetsDir finds the control-plane binaries: $KUBEBUILDER_ASSETS, or bin/k8s
// of the repository (as built by `make envtest-assets`).
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("KUBEBUILDER_ASSETS is not set and %w", err)
	}
	assets := filepath.Join(root, "bin", "k8s")
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		return "", fmt.Errorf("no kube-apiserver in %s: run `make envtest-assets` (or `make test`), or set KUBEBUILDER_ASSETS", assets)
	}
	return assets, nil
}

// RepoRoot is the directory of nsprov's go.mod above the working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("no go.mod was found above the working directory")
		}
	}
}

// ModuleDir is where the Go module cache holds a dependency's sources.
func ModuleDir(module string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("finding module %s (go list -m): %w", module, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// CRDPaths are the directories of the CustomResourceDefinitions a cluster
// running nsprov has, from the Go module cache: Argo Workflows', OpenReports'
// and cert-manager's.
func CRDPaths() ([]string, error) {
	dirs := []struct{ module, dir string }{
		{"github.com/argoproj/argo-workflows/v3", "manifests/base/crds/full"},
		{"github.com/openreports/reports-api", "config/crd"},
		{"github.com/cert-manager/cert-manager", "deploy/crds"},
	}
	paths := make([]string, 0, len(dirs))
	for _, d := range dirs {
		root, err := ModuleDir(d.module)
		if err != nil {
			return nil, err
		}
		paths = append(paths, filepath.Join(root, filepath.FromSlash(d.dir)))
	}
	return paths, nil
}

// NewControlPlane returns an unstarted envtest environment that runs the
// binaries in assets and installs the CRDs of CRDPaths.
func NewControlPlane(assets string) (*crenvtest.Environment, error) {
	crds, err := CRDPaths()
	if err != nil {
		return nil, err
	}
	return &crenvtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions: crenvtest.CRDInstallOptions{
			// Establishing the CRDs takes longer than the 10s default on a
			// busy 2-core machine.
			MaxTime:            2 * time.Minute,
			Paths:              crds,
			ErrorIfPathMissing: true,
		},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   Scheme,
	}, nil
}

// Start starts etcd and kube-apiserver with the chart's webhook
// configurations, installs the WorkflowTemplate, runs nsprov's server (built
// by server.New, as `nsprov serve` builds it) and the runner of Workflows, and
// returns once the API server can call the webhooks.
func Start(ctx context.Context, o Options) (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	crlog.SetLogger(o.Logger)
	if o.Recorder == nil {
		o.Recorder = admission.LogRecorder{}
	}
	mutating, validating, err := WebhookConfigurations()
	if err != nil {
		return nil, err
	}
	env, err := NewControlPlane(assets)
	if err != nil {
		return nil, err
	}
	env.WebhookInstallOptions = crenvtest.WebhookInstallOptions{
		MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mutating},
		ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{validating},
	}
	cfg, err := env.Start()
	if err != nil {
		// Start can fail after etcd and kube-apiserver are up (installing the
		// CRDs, say); stop whatever it started so no process is left behind.
		_ = env.Stop()
		return nil, fmt.Errorf("starting the control plane from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, env: env, opts: o}
	ok := false
	defer func() {
		if !ok {
			_ = e.Stop()
		}
	}()
	if e.Client, err = client.New(cfg, client.Options{Scheme: Scheme}); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(logr.NewContext(context.Background(), o.Logger))
	e.cancel = cancel
	if err := e.grantNamespaceAccess(ctx); err != nil {
		return nil, err
	}
	if err := e.installWorkflowTemplate(ctx); err != nil {
		return nil, err
	}
	// nsprov itself: webhooks on the port the API server calls, and the
	// provisioning controller.
	wio := &env.WebhookInstallOptions
	if e.Policies, err = e.startServer(runCtx, wio.LocalServingHost, wio.LocalServingPort, !o.DeferController); err != nil {
		return nil, err
	}
	if err := waitForTLS(ctx, net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))); err != nil {
		return nil, err
	}
	if !o.NoRunner {
		if err := e.installArgoConfig(ctx); err != nil {
			return nil, err
		}
		e.assets = assets
		if !o.DeferArgo {
			if err := e.startArgo(ctx, assets); err != nil {
				return nil, err
			}
		}
	}
	ok = true
	return e, nil
}

// Identities of nsprov's controller and of the workflow steps; the policy data
// lists both among nsprov's own identities.
const (
	ControllerUser  = "system:serviceaccount:nsprov-system:nsprov"
	ProvisionerUser = "system:serviceaccount:argo:nsprov-provisioner"
	ArgoNamespace   = "argo"
)

// installWorkflowTemplate creates the Argo namespace and the nsprov-provision
// WorkflowTemplate from the chart.
func (e *Env) installWorkflowTemplate(ctx context.Context) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	if err := e.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ArgoNamespace}}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", ArgoNamespace, err)
	}
	tmpl, err := LoadWorkflowTemplate(root)
	if err != nil {
		return err
	}
	if err := e.Client.Create(ctx, tmpl); err != nil {
		return fmt.Errorf("installing WorkflowTemplate %s: %w", tmpl.Name, err)
	}
	return nil
}

// StartController runs another replica of nsprov's server, with a policy
// store of its own, until ctx ends: its provisioning controller works beside
// the first one's (there is no leader election), its webhooks listen on a
// port the API server does not call. Start runs one server; a test can start
// more, as extra or restarted replicas would be.
func (e *Env) StartController(ctx context.Context) error {
	port, err := FreePort()
	if err != nil {
		return err
	}
	_, err = e.startServer(ctx, e.env.WebhookInstallOptions.LocalServingHost, port, true)
	return err
}

// StartArgo starts Argo's processes in an Env started with DeferArgo.
func (e *Env) StartArgo(ctx context.Context) error {
	if !e.opts.DeferArgo || e.opts.NoRunner || e.cluster != nil {
		return fmt.Errorf("StartArgo needs an Env started with DeferArgo, whose Argo has not started yet")
	}
	return e.startArgo(ctx, e.assets)
}

// installArgoConfig creates the workflow-controller's ConfigMap with
// Options.ArgoConfig, when there is any, before Argo starts (otherwise the
// cluster package creates it); metrics and telemetry stay off, as the
// cluster package has them, so that several controllers share the machine.
func (e *Env) installArgoConfig(ctx context.Context) error {
	if len(e.opts.ArgoConfig) == 0 {
		return nil
	}
	data := map[string]string{"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"}
	maps.Copy(data, e.opts.ArgoConfig)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cluster.ArgoConfigMap, Namespace: ArgoNamespace}, Data: data}
	if err := e.Client.Create(ctx, cm); err != nil {
		return fmt.Errorf("installing the workflow-controller's ConfigMap: %w", err)
	}
	return nil
}

// startServer runs nsprov's server as `nsprov serve` would with its default
// flags, as nsprov's service account, until ctx ends: its webhooks listen on
// host:port with envtest's serving certificate, without metrics and probe
// endpoints and without leader election, with its provisioning controller
// when controller is set. It returns the server's policy store.
func (e *Env) startServer(ctx context.Context, host string, port int, controller bool) (*policy.Store, error) {
	var o server.Options
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.AddFlags(fs)
	args := []string{
		"--webhook-host", host, "--webhook-port", strconv.Itoa(port),
		"--cert-dir", e.env.WebhookInstallOptions.LocalServingCertDir,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0", "--leader-elect=false",
		"--identity", ControllerUser, "--argo-namespace", ArgoNamespace,
		"--policy-poll-interval", "200ms", "--controller=" + strconv.FormatBool(controller),
		// Failed provisioning is retried after 2s, 4s, 8s, ... rather than 30s.
		"--retry-base-delay", "2s",
	}
	if e.opts.PolicyDir != "" {
		args = append(args, "--policy-dir", e.opts.PolicyDir)
	}
	if e.opts.NoRunner {
		// No Workflow ever finishes: a bound on the running ones would
		// hold all but the first back.
		args = append(args, "--max-running-workflows", "0", "--workflow-start-rate", "0")
	}
	// The test's own flags come last, so they win.
	if err := fs.Parse(append(args, e.opts.ServerArgs...)); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	store, err := o.Policy.NewStore(ctx)
	if err != nil {
		return nil, err
	}
	cfg, err := e.User(ControllerUser, "system:serviceaccounts", "system:serviceaccounts:nsprov-system", "system:masters")
	if err != nil {
		return nil, err
	}
	if e.opts.WrapTransport != nil {
		cfg.Wrap(e.opts.WrapTransport)
	}
	srv, err := server.New(cfg, store, o, server.Dependencies{Logger: e.opts.Logger, Recorder: e.opts.Recorder})
	if err != nil {
		return nil, fmt.Errorf("building nsprov's server: %w", err)
	}
	e.wg.Go(func() { _ = srv.Start(ctx) })
	return store, nil
}

// WebhookConfigurations are the chart's webhook configurations, rendered with
// its default values, for envtest to install: it points their Service
// references at its local webhook server.
func WebhookConfigurations() (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	objs, err := chartrender.Render(nil, "nsprov-system")
	if err != nil {
		return nil, nil, err
	}
	var (
		mutating   *admissionregistrationv1.MutatingWebhookConfiguration
		validating *admissionregistrationv1.ValidatingWebhookConfiguration
	)
	for _, obj := range objs {
		var into any
		switch obj.GetKind() {
		case "MutatingWebhookConfiguration":
			mutating = &admissionregistrationv1.MutatingWebhookConfiguration{}
			into = mutating
		case "ValidatingWebhookConfiguration":
			validating = &admissionregistrationv1.ValidatingWebhookConfiguration{}
			into = validating
		default:
			continue
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, into, true); err != nil {
			return nil, nil, fmt.Errorf("the chart's %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
	}
	if mutating == nil || validating == nil {
		return nil, nil, errors.New("the chart renders no mutating or no validating webhook configuration")
	}
	for i := range mutating.Webhooks {
		trimPath(&mutating.Webhooks[i].ClientConfig)
	}
	for i := range validating.Webhooks {
		trimPath(&validating.Webhooks[i].ClientConfig)
	}
	// The chart installs them on Ignore and its nsprov-activate hook sets
	// the values' failurePolicy once nsprov answers; the harness starts
	// with the activated configuration.
	policy := admissionregistrationv1.FailurePolicyType(mutating.Annotations["nsprov.io/failure-policy"])
	for i := range mutating.Webhooks {
		mutating.Webhooks[i].FailurePolicy = &policy
	}
	for i := range validating.Webhooks {
		validating.Webhooks[i].FailurePolicy = &policy
	}
	return mutating, validating, nil
}

// LoadWorkflowTemplate reads the chart's nsprov-provision WorkflowTemplate
// spec (charts/nsprov/files/provision-workflow.yaml under root).
func LoadWorkflowTemplate(root string) (*wfv1.WorkflowTemplate, error) {
	path := filepath.Join(root, "charts", "nsprov", "files", "provision-workflow.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tmpl := &wfv1.WorkflowTemplate{ObjectMeta: metav1.ObjectMeta{Name: trigger.TemplateName, Namespace: ArgoNamespace}}
	if err := yaml.UnmarshalStrict(data, &tmpl.Spec); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tmpl, nil
}

// trimPath drops the leading slash of a service path: envtest joins it to
// https://host:port/ itself.
func trimPath(cc *admissionregistrationv1.WebhookClientConfig) {
	if cc.Service != nil && cc.Service.Path != nil {
		p := strings.TrimPrefix(*cc.Service.Path, "/")
		cc.Service.Path = &p
	}
}

func waitForTLS(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		d := &tls.Dialer{Config: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // only probes that the port serves TLS
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return conn.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the webhook server on %s did not start: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// grantNamespaceAccess lets every authenticated user create, read and update
// namespaces, as a cluster that offers namespace self-service would; nsprov's
// policy then decides which requests are allowed.
func (e *Env) grantNamespaceAccess(ctx context.Context) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "nsprov-requester"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"namespaces"},
			Verbs: []string{"create", "get", "list", "watch", "update", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "nsprov-requester"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "Group", Name: "system:authenticated"}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := e.Client.Create(ctx, obj); err != nil {
			return fmt.Errorf("granting namespace access: %w", err)
		}
	}
	return nil
}

// User returns a configuration that authenticates as name with groups (the
// API server adds system:authenticated).
func (e *Env) User(name string, groups ...string) (*rest.Config, error) {
	return UserConfig(e.env, name, groups...)
}

// UserKubeconfig returns a kubeconfig that authenticates as name with groups.
func (e *Env) UserKubeconfig(name string, groups ...string) ([]byte, error) {
	return UserKubeconfig(e.env, name, groups...)
}

// UserConfig returns a configuration for a started control plane that
// authenticates as name with groups.
func UserConfig(cp *crenvtest.Environment, name string, groups ...string) (*rest.Config, error) {
	u, err := cp.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.Config(), nil
}

// UserKubeconfig returns a kubeconfig for a started control plane that
// authenticates as name with groups.
func UserKubeconfig(cp *crenvtest.Environment, name string, groups ...string) ([]byte, error) {
	u, err := cp.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.KubeConfig()
}

// WaitGroupTimeout waits for wg, at most d, and tells whether it finished.
func WaitGroupTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// StopServer stops nsprov's server (its webhooks and its controller) and
// waits until it has ended; the API server's calls to the webhooks then fail,
// as while nsprov is down. The control plane, Argo and kube-controller-manager
// keep running.
func (e *Env) StopServer() {
	e.cancel()
	WaitGroupTimeout(&e.wg, 30*time.Second)
}

// Stop stops the webhooks, the controller, Argo and the control plane.
func (e *Env) Stop() error {
	if e.cancel != nil {
		e.cancel()
	}
	// Let the in-process parts finish before their API server goes away.
	WaitGroupTimeout(&e.wg, 30*time.Second)
	if e.cluster != nil {
		e.cluster.Stop()
	}
	return e.env.Stop()
}
