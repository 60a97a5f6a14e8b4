package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	nsadmission "github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/trigger"
)

// ServeOptions are the flags of `nsprov serve`.
type ServeOptions struct {
	// Kubeconfig is the kubeconfig file to use; empty uses $KUBECONFIG, the
	// in-cluster configuration or ~/.kube/config, in that order.
	Kubeconfig string
	// WebhookHost is the address the webhook server listens on (empty: all).
	WebhookHost string
	// WebhookPort is the port the webhook server listens on.
	WebhookPort int
	// CertDir holds the serving certificate and key; they are reloaded when the files change.
	CertDir string
	// CertName and KeyName are the file names in CertDir.
	CertName, KeyName string
	// Certs choose between CertDir's files and self-managed certificates.
	Certs CertOptions
	// MetricsAddr is the address of the Prometheus metrics endpoint; "0" disables it.
	MetricsAddr string
	// ProbeAddr is the address of /healthz and /readyz.
	ProbeAddr string
	// PolicyDir replaces the embedded bundle; it is reloaded when its files change.
	PolicyDir string
	// PolicyPollInterval is how often PolicyDir is checked for changes.
	PolicyPollInterval time.Duration
	// DecisionCacheSize is how many decisions of each kind are remembered by
	// their input; 0 disables the cache.
	DecisionCacheSize int
	// PolicyEvaluator is compiled (OPA's planned IR run by nsprov) or
	// topdown (OPA's evaluator).
	PolicyEvaluator string
	// Controller runs the provisioning controller (leader-elected) beside the webhooks.
	Controller bool
	// ArgoNamespace is where the WorkflowTemplate lives and Workflows are created.
	ArgoNamespace string
	// WorkflowTemplate is the WorkflowTemplate the controller runs.
	WorkflowTemplate string
	// Identity is the username the controller evaluates plans as; the policy
	// data must list it among nsprov's own identities (manager_users).
	Identity string
	// ConcurrentReconciles is how many namespaces the controller works on at once.
	ConcurrentReconciles int
	// LeaderElect makes one replica at a time run the controller.
	LeaderElect bool
	// LeaderElectionNamespace holds the leader election Lease (default: the
	// namespace nsprov runs in).
	LeaderElectionNamespace string
	// KubeAPIQPS and KubeAPIBurst bound nsprov's requests to the API server.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// LogFormat is json or text.
	LogFormat string
	// LogLevel is the verbosity: 0 logs errors; with DecisionLog off, 0 also
	// logs denials and 1 every decision.
	LogLevel int
	// AuditReportSize is how many denial results the ClusterReport
	// nsprov-admission-denials keeps (newest first).
	AuditReportSize int
	// AuditQueueSize bounds the denial results waiting to be written; when it
	// is full the oldest are dropped and counted.
	AuditQueueSize int
	// AuditInterval is the period of the background audit of existing
	// namespaces (leader only); 0 audits only at start and on policy changes.
	AuditInterval time.Duration
	// DecisionLog is where the JSON decision log goes: stdout, stderr, off or
	// a file path (appended to).
	DecisionLog string
}

// AddFlags binds the options to a flag set.
func (o *ServeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, the in-cluster configuration, or ~/.kube/config)")
	fs.StringVar(&o.WebhookHost, "webhook-host", "", "address the webhook server listens on (default: all addresses)")
	fs.IntVar(&o.WebhookPort, "webhook-port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory with the webhook's serving certificate and key (reloaded when they change)")
	fs.StringVar(&o.CertName, "cert-name", "tls.crt", "certificate file name in --cert-dir")
	fs.StringVar(&o.KeyName, "key-name", "tls.key", "private key file name in --cert-dir")
	o.Certs.AddFlags(fs)
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&o.PolicyDir, "policy-dir", "", "directory with a policy bundle laid out like policies/, used instead of the embedded one and reloaded when it changes")
	fs.DurationVar(&o.PolicyPollInterval, "policy-poll-interval", 2*time.Second, "how often --policy-dir is checked for changes")
	fs.IntVar(&o.DecisionCacheSize, "decision-cache-size", policy.DefaultDecisionCacheSize, "how many mutation, validation and plan decisions are each remembered by their input (repeated requests skip evaluation); 0 disables")
	fs.StringVar(&o.PolicyEvaluator, "policy-evaluator", policy.EvaluatorCompiled, "how policies are evaluated: compiled (OPA's planner output, run by nsprov; falls back to topdown when a policy cannot be compiled) or topdown (OPA's evaluator)")
	fs.BoolVar(&o.Controller, "controller", true, "run the provisioning controller beside the webhooks")
	fs.StringVar(&o.ArgoNamespace, "argo-namespace", "argo", "namespace of the WorkflowTemplate and of the Workflows nsprov creates")
	fs.StringVar(&o.WorkflowTemplate, "workflow-template", trigger.TemplateName, "WorkflowTemplate the controller runs for each namespace")
	fs.StringVar(&o.Identity, "identity", "system:serviceaccount:nsprov-system:nsprov", "username the controller evaluates plans as (listed in the policy's manager_users)")
	fs.IntVar(&o.ConcurrentReconciles, "concurrent-reconciles", 4, "how many namespaces the controller reconciles at once")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "elect one replica to run the controller; the webhooks run on every replica")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the namespace nsprov runs in)")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", 50, "requests per second nsprov may send to the API server")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", 100, "burst of requests nsprov may send to the API server")
	fs.StringVar(&o.LogFormat, "log-format", "json", "log format: json or text")
	fs.IntVarP(&o.LogLevel, "verbosity", "v", 0, "log verbosity: 0 logs errors, 1 more; with --decision-log off, 0 also logs denials and 1 every admission decision")
	fs.IntVar(&o.AuditReportSize, "audit-report-size", audit.DefaultReportSize, "denial results kept in ClusterReport "+audit.DenialsReportName+" (newest first; the default keeps it well under etcd's object size limit)")
	fs.IntVar(&o.AuditQueueSize, "audit-queue-size", audit.DefaultQueueSize, "denial results that may wait to be written to the report; when full, the oldest are dropped and counted")
	fs.DurationVar(&o.AuditInterval, "audit-interval", 10*time.Minute, "period of the background audit of existing namespaces into ClusterReport "+audit.NamespaceAuditReportName+" (leader only; it also runs at start and when the policy changes); 0 disables periodic runs")
	fs.StringVar(&o.DecisionLog, "decision-log", "stdout", "where every admission decision is written as a JSON line: stdout, stderr, off, or a file path")
}

// Validate checks the options.
func (o *ServeOptions) Validate() error {
	var errs []error
	if o.Certs.Mode != CertModeFiles {
		errs = append(errs, o.Certs.validate()...)
	} else if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir is required with --cert-mode=files: the directory with the serving certificate and key (or use --cert-mode=self-managed)"))
	} else {
		for _, f := range []string{o.CertName, o.KeyName} {
			if _, err := os.Stat(filepath.Join(o.CertDir, f)); err != nil {
				errs = append(errs, fmt.Errorf("--cert-dir: %w; mount the webhook's TLS secret there", err))
			}
		}
	}
	if o.WebhookPort < 1 || o.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port %d is not a port number (1-65535)", o.WebhookPort))
	}
	for flag, addr := range map[string]string{"--metrics-bind-address": o.MetricsAddr, "--health-probe-bind-address": o.ProbeAddr} {
		if addr == "0" || (flag == "--health-probe-bind-address" && addr == "") {
			continue
		}
		if _, port, err := net.SplitHostPort(addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port: %w", flag, addr, err))
		} else if _, err := strconv.Atoi(port); err != nil {
			errs = append(errs, fmt.Errorf("%s %q has no numeric port", flag, addr))
		}
	}
	if o.PolicyDir != "" {
		if info, err := os.Stat(o.PolicyDir); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--policy-dir %q is not a directory", o.PolicyDir))
		}
	}
	if o.PolicyPollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--policy-poll-interval %s is too short; use at least 100ms", o.PolicyPollInterval))
	}
	if o.LogFormat != "json" && o.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q is not supported; use json or text", o.LogFormat))
	}
	if o.Controller && (o.ArgoNamespace == "" || o.WorkflowTemplate == "" || o.Identity == "") {
		errs = append(errs, errors.New("--argo-namespace, --workflow-template and --identity must not be empty while --controller is on"))
	}
	if o.Controller && o.ConcurrentReconciles < 1 {
		errs = append(errs, fmt.Errorf("--concurrent-reconciles %d must be at least 1", o.ConcurrentReconciles))
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d must be positive", o.KubeAPIQPS, o.KubeAPIBurst))
	}
	if o.DecisionCacheSize < 0 {
		errs = append(errs, fmt.Errorf("--decision-cache-size %d must not be negative; use 0 to disable the cache", o.DecisionCacheSize))
	}
	if o.PolicyEvaluator != policy.EvaluatorCompiled && o.PolicyEvaluator != policy.EvaluatorTopdown {
		errs = append(errs, fmt.Errorf("--policy-evaluator %q is not known; use %s or %s", o.PolicyEvaluator, policy.EvaluatorCompiled, policy.EvaluatorTopdown))
	}
	if o.LogLevel < 0 {
		errs = append(errs, fmt.Errorf("--verbosity %d must not be negative; use 0 or 1", o.LogLevel))
	}
	errs = append(errs, o.validateAudit()...)
	return errors.Join(errs...)
}

func newServeCommand(s streams) *cobra.Command {
	o := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runServe(cmd.Context(), o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Logger builds the process logger for the options.
func (o *ServeOptions) Logger(s streams) logr.Logger {
	return zap.New(
		zap.WriteTo(s.err),
		zap.UseDevMode(o.LogFormat == "text"),
		zap.Level(zapcore.Level(-o.LogLevel)),
	)
}

func (o *ServeOptions) restConfig() (*rest.Config, error) {
	if o.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	return ctrl.GetConfig()
}

// alwaysRunnable runs on every replica, leader or not.
type alwaysRunnable func(context.Context) error

func (f alwaysRunnable) Start(ctx context.Context) error { return f(ctx) }
func (alwaysRunnable) NeedLeaderElection() bool          { return false }

func runServe(ctx context.Context, o *ServeOptions, s streams) error {
	log := o.Logger(s)
	ctrl.SetLogger(log)
	ctx = logr.NewContext(ctx, log)

	store, err := policy.NewStore(ctx, o.PolicyDir)
	if err != nil {
		return usageError(fmt.Errorf("the policy bundle does not load, so nsprov cannot start: %w", err))
	}
	store.SetInterval(o.PolicyPollInterval)
	store.SetDecisionCacheSize(o.DecisionCacheSize)
	if err := store.SetEvaluator(o.PolicyEvaluator); err != nil {
		return usageError(err)
	}
	b := store.Bundle()
	log.Info("policy loaded", "source", b.Source, "revision", b.Revision, "evaluator", b.Evaluator)

	cfg, err := o.restConfig()
	if err != nil {
		return usageError(fmt.Errorf("no Kubernetes API configuration: %w; pass --kubeconfig or run in a cluster", err))
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := wfv1.AddToScheme(scheme); err != nil {
		return err
	}
	serving, err := o.servingCertificates(cfg, scheme)
	if err != nil {
		return usageError(err)
	}
	server := webhook.NewServer(webhook.Options{
		Host:     o.WebhookHost,
		Port:     o.WebhookPort,
		CertDir:  o.CertDir,
		CertName: o.CertName,
		KeyName:  o.KeyName,
		TLSOpts:  append([]func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}, serving.tlsOpts...),
	})
	// Without Argo the webhooks still guard namespace requests; only
	// provisioning is off.
	controller := o.Controller
	if controller {
		dc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			return fmt.Errorf("creating a discovery client: %w", err)
		}
		if err := trigger.ArgoInstalled(dc); err != nil {
			log.Error(err, "provisioning is off; the admission webhooks keep serving")
			controller = false
		}
	}
	var cacheOpts cache.Options
	if controller {
		// The controller only reads Workflows in the Argo namespace.
		cacheOpts.ByObject = trigger.CacheOptions(o.ArgoNamespace)
	}
	// The provisioning controller and the background audit run on the leader.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Logger:                  log,
		WebhookServer:           server,
		Metrics:                 metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:  o.ProbeAddr,
		BaseContext:             func() context.Context { return ctx },
		LeaderElection:          o.LeaderElect,
		LeaderElectionID:        "nsprov-controller",
		LeaderElectionNamespace: o.LeaderElectionNamespace,
		Cache:                   cacheOpts,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	// The manager runs the webhook server only once it has been asked for it.
	server = mgr.GetWebhookServer()
	rec, closeAudit, err := o.setupAudit(mgr, cfg, store, s, log)
	if err != nil {
		return err
	}
	defer closeAudit()
	RegisterWebhooks(server, store, rec)
	if err := serving.register(mgr); err != nil {
		return err
	}
	reportPolicyReloads(store, o.PolicyDir, mgr.GetEventRecorder("nsprov"), log)
	if err := mgr.Add(alwaysRunnable(store.Watch)); err != nil {
		return err
	}
	if controller {
		if err := SetupController(mgr, store, o.ArgoNamespace, o.WorkflowTemplate, o.Identity, o.ConcurrentReconciles); err != nil {
			return fmt.Errorf("setting up the provisioning controller: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return err
	}
	log.Info("starting", "webhookPort", o.WebhookPort, "certMode", o.Certs.Mode, "certDir", o.CertDir)
	return mgr.Start(ctx)
}

// RegisterWebhooks serves the mutating and validating handlers on server;
// every decision goes to rec.
func RegisterWebhooks(server webhook.Server, store *policy.Store, rec nsadmission.Recorder) {
	mutate := &webhook.Admission{Handler: &nsadmission.Mutator{Policies: store, Recorder: rec}}
	validate := &webhook.Admission{Handler: &nsadmission.Validator{Policies: store, Recorder: rec}}
	server.Register(nsadmission.MutatePath, mutate.WithRecoverPanic(true))
	server.Register(nsadmission.ValidatePath, validate.WithRecoverPanic(true))
}

// SetupController registers the provisioning controller with mgr.
func SetupController(mgr ctrl.Manager, store *policy.Store, argoNamespace, template, identity string, concurrency int) error {
	r := &trigger.Reconciler{
		Client:   mgr.GetClient(),
		Policies: store,
		Events:   mgr.GetEventRecorder("nsprov"),
		Options:  trigger.Options{ArgoNamespace: argoNamespace, TemplateName: template},
		Username: identity,

		MaxConcurrentReconciles: concurrency,
	}
	return r.SetupWithManager(mgr)
}
