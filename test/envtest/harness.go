package envtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

// Options configure the harness.
type Options struct {
	// PolicyDir replaces the embedded policy bundle, and is watched for changes.
	PolicyDir string
	// Logger receives the webhook server's logs (default: discarded).
	Logger logr.Logger
	// Recorder receives every admission decision (default: logged to Logger).
	Recorder admission.Recorder
}

// Env is a running control plane with nsprov's webhooks registered.
type Env struct {
	// Config is an admin (system:masters) configuration.
	Config *rest.Config
	// Client is an admin client.
	Client client.Client
	// Policies is the policy store the webhooks serve.
	Policies *policy.Store

	env    *crenvtest.Environment
	cancel context.CancelFunc
	done   chan error
}

// Scheme is the scheme of the harness's clients.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
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
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			assets := filepath.Join(dir, "bin", "k8s")
			if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
				return "", fmt.Errorf("no kube-apiserver in %s: run `make envtest-assets` (or `make test`), or set KUBEBUILDER_ASSETS", assets)
			}
			return assets, nil
		}
		if filepath.Dir(dir) == dir {
			return "", errors.New("KUBEBUILDER_ASSETS is not set and no go.mod was found above the working directory")
		}
	}
}

// Start starts etcd, kube-apiserver and nsprov's webhooks, and returns once
// the API server calls the webhooks.
func Start(ctx context.Context, o Options) (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	crlog.SetLogger(o.Logger)
	store, err := policy.NewStore(ctx, o.PolicyDir)
	if err != nil {
		return nil, err
	}
	store.SetInterval(200 * time.Millisecond)

	mutating, validating := admission.Configurations(admission.ConfigurationOptions{
		Name: "nsprov",
		// envtest rewrites the service reference to a URL on the local server.
		ServiceNamespace: "nsprov-system", ServiceName: "nsprov", ServicePort: 443,
		ExemptGroups: []string{"system:masters", "platform-admins", "system:serviceaccounts:kube-system"},
	})
	for _, w := range mutating.Webhooks {
		trimPath(&w.ClientConfig)
	}
	for _, w := range validating.Webhooks {
		trimPath(&w.ClientConfig)
	}
	env := &crenvtest.Environment{
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   Scheme,
		WebhookInstallOptions: crenvtest.WebhookInstallOptions{
			MutatingWebhooks:   []*admissionregistrationv1.MutatingWebhookConfiguration{mutating},
			ValidatingWebhooks: []*admissionregistrationv1.ValidatingWebhookConfiguration{validating},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("starting the control plane from %s: %w", assets, err)
	}
	e := &Env{Config: cfg, Policies: store, env: env, done: make(chan error, 2)}
	ok := false
	defer func() {
		if !ok {
			_ = e.Stop()
		}
	}()
	if e.Client, err = client.New(cfg, client.Options{Scheme: Scheme}); err != nil {
		return nil, err
	}

	wio := &env.WebhookInstallOptions
	server := webhook.NewServer(webhook.Options{
		Host:    wio.LocalServingHost,
		Port:    wio.LocalServingPort,
		CertDir: wio.LocalServingCertDir,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }},
	})
	rec := o.Recorder
	if rec == nil {
		rec = admission.LogRecorder{}
	}
	app.RegisterWebhooks(server, store, rec)
	runCtx, cancel := context.WithCancel(logr.NewContext(context.Background(), o.Logger))
	e.cancel = cancel
	go func() { e.done <- server.Start(runCtx) }()
	go func() { e.done <- store.Watch(runCtx) }()
	if err := waitForTLS(ctx, net.JoinHostPort(wio.LocalServingHost, strconv.Itoa(wio.LocalServingPort))); err != nil {
		return nil, err
	}
	if err := e.grantNamespaceAccess(ctx); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
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
	u, err := e.env.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.Config(), nil
}

// UserKubeconfig returns a kubeconfig that authenticates as name with groups.
func (e *Env) UserKubeconfig(name string, groups ...string) ([]byte, error) {
	u, err := e.env.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("adding user %s: %w", name, err)
	}
	return u.KubeConfig()
}

// Stop stops the webhooks and the control plane.
func (e *Env) Stop() error {
	if e.cancel != nil {
		e.cancel()
	}
	return e.env.Stop()
}
