package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"go.uber.org/zap/zapcore"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/trigger"
)

// Options are the flags of `nsprov serve`, grouped by concern.
type Options struct {
	// Kube is the connection to the API server.
	Kube KubeOptions
	// Webhook is the webhook server and its serving certificate.
	Webhook WebhookOptions
	// Endpoints are the metrics and health probe endpoints.
	Endpoints EndpointOptions
	// Policy is the policy bundle and how it is evaluated.
	Policy PolicyOptions
	// Controller is the provisioning controller and its leader election.
	Controller ControllerOptions
	// Audit is the decision log, the denial report and the background audit.
	Audit AuditOptions
	// Logging is the process log.
	Logging LoggingOptions
}

// AddFlags binds every group to a flag set.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	o.Kube.AddFlags(fs)
	o.Webhook.AddFlags(fs)
	o.Endpoints.AddFlags(fs)
	o.Policy.AddFlags(fs)
	o.Controller.AddFlags(fs)
	o.Audit.AddFlags(fs)
	o.Logging.AddFlags(fs)
}

// Validate checks every group and reports every problem at once.
func (o *Options) Validate() error {
	return errors.Join(
		o.Webhook.Validate(),
		o.Endpoints.Validate(),
		o.Policy.Validate(),
		o.Logging.Validate(),
		o.Controller.Validate(),
		o.Kube.Validate(),
		o.Audit.Validate(),
	)
}

// KubeOptions are the connection to the API server.
type KubeOptions struct {
	// Kubeconfig is the kubeconfig file to use; empty uses $KUBECONFIG, the
	// in-cluster configuration or ~/.kube/config, in that order.
	Kubeconfig string
	// QPS and Burst bound nsprov's requests to the API server.
	QPS   float32
	Burst int
}

// AddFlags binds the options to a flag set.
func (o *KubeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, the in-cluster configuration, or ~/.kube/config)")
	fs.Float32Var(&o.QPS, "kube-api-qps", 50, "requests per second nsprov may send to the API server")
	fs.IntVar(&o.Burst, "kube-api-burst", 100, "burst of requests nsprov may send to the API server")
}

// Validate checks the options.
func (o *KubeOptions) Validate() error {
	if o.QPS <= 0 || o.Burst < 1 {
		return fmt.Errorf("--kube-api-qps %g and --kube-api-burst %d must be positive", o.QPS, o.Burst)
	}
	return nil
}

// RestConfig loads the API server configuration: --kubeconfig, or
// controller-runtime's lookup.
func (o *KubeOptions) RestConfig() (*rest.Config, error) {
	if o.Kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	}
	return ctrl.GetConfig()
}

// WebhookOptions are the webhook server and its serving certificate.
type WebhookOptions struct {
	// Host is the address the webhook server listens on (empty: all).
	Host string
	// Port is the port the webhook server listens on.
	Port int
	// CertDir holds the serving certificate and key; they are reloaded when the files change.
	CertDir string
	// CertName and KeyName are the file names in CertDir.
	CertName, KeyName string
	// Certs choose between CertDir's files and self-managed certificates.
	Certs CertOptions
	// ClientCAFile, when set, makes the webhook server require a client
	// certificate signed by one of the CAs in this PEM file (the API
	// server's, configured with its admission configuration); it is
	// reloaded when it changes.
	ClientCAFile string
}

// AddFlags binds the options to a flag set.
func (o *WebhookOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Host, "webhook-host", "", "address the webhook server listens on (default: all addresses)")
	fs.IntVar(&o.Port, "webhook-port", 9443, "port the webhook server listens on")
	fs.StringVar(&o.CertDir, "cert-dir", "", "directory with the webhook's serving certificate and key (reloaded when they change)")
	fs.StringVar(&o.CertName, "cert-name", "tls.crt", "certificate file name in --cert-dir")
	fs.StringVar(&o.KeyName, "key-name", "tls.key", "private key file name in --cert-dir")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", "", "PEM file of the CAs whose client certificates the webhook server requires (the API server's webhook client certificate, see docs/security.md); reloaded when it changes; empty: any caller is answered and its denials are marked unverified")
	o.Certs.AddFlags(fs)
}

// Validate checks the options.
func (o *WebhookOptions) Validate() error {
	var errs []error
	if o.Certs.Mode != CertModeFiles {
		errs = append(errs, o.Certs.Validate())
	} else if o.CertDir == "" {
		errs = append(errs, errors.New("--cert-dir is required with --cert-mode=files: the directory with the serving certificate and key (or use --cert-mode=self-managed)"))
	} else {
		for _, f := range []string{o.CertName, o.KeyName} {
			if _, err := os.Stat(filepath.Join(o.CertDir, f)); err != nil {
				errs = append(errs, fmt.Errorf("--cert-dir: %w; mount the webhook's TLS secret there", err))
			}
		}
	}
	if o.ClientCAFile != "" {
		if _, err := readClientCAs(o.ClientCAFile); err != nil {
			errs = append(errs, fmt.Errorf("--client-ca-file: %w", err))
		}
	}
	if o.Port < 1 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port %d is not a port number (1-65535)", o.Port))
	}
	return errors.Join(errs...)
}

// EndpointOptions are the metrics and health probe endpoints.
type EndpointOptions struct {
	// MetricsAddr is the address of the Prometheus metrics endpoint; "0" disables it.
	MetricsAddr string
	// ProbeAddr is the address of /healthz and /readyz.
	ProbeAddr string
	// Pprof serves Go's profiling endpoints under /debug/pprof/ on the
	// metrics listener. Off by default: profiles reveal internals and cost
	// CPU while they are taken.
	Pprof bool
}

// AddFlags binds the options to a flag set.
func (o *EndpointOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.BoolVar(&o.Pprof, "enable-pprof", false, "serve Go's profiling endpoints under /debug/pprof/ on the metrics listener (needs --metrics-bind-address)")
}

// Validate checks the options.
func (o *EndpointOptions) Validate() error {
	var errs []error
	if o.Pprof && o.MetricsAddr == "0" {
		errs = append(errs, errors.New("--enable-pprof needs the metrics listener; set --metrics-bind-address"))
	}
	for _, a := range []struct{ flag, addr string }{{"--metrics-bind-address", o.MetricsAddr}, {"--health-probe-bind-address", o.ProbeAddr}} {
		if a.addr == "0" || (a.flag == "--health-probe-bind-address" && a.addr == "") {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s %q is not host:port: %w", a.flag, a.addr, err))
		} else if _, err := strconv.Atoi(port); err != nil {
			errs = append(errs, fmt.Errorf("%s %q has no numeric port", a.flag, a.addr))
		}
	}
	return errors.Join(errs...)
}

// PolicyOptions are the policy bundle and how it is evaluated.
type PolicyOptions struct {
	// Dir replaces the embedded bundle; it is reloaded when its files change.
	Dir string
	// OverlayDir holds files layered over the bundle (Dir's or the embedded
	// one), each replacing the bundle's file of the same path, such as the
	// chart's config/install.yaml; it is reloaded when its files change.
	OverlayDir string
	// PollInterval is how often Dir and OverlayDir are checked for changes.
	PollInterval time.Duration
	// DecisionCacheSize is how many decisions of each kind are remembered by
	// their input; 0 disables the cache.
	DecisionCacheSize int
	// DecisionCacheBytes bounds the memory of the decision caches (all kinds
	// together); 0 disables the cache.
	DecisionCacheBytes int
	// Evaluator is compiled (OPA's planned IR run by nsprov) or topdown
	// (OPA's evaluator).
	Evaluator string
	// LastGood is the ConfigMap where every replica saves the last bundle
	// of Dir that loaded, and from which a replica starts when Dir's bundle
	// does not load; empty disables both.
	LastGood string
	// LastGoodNamespace is LastGood's namespace (default: $POD_NAMESPACE or
	// the namespace nsprov runs in; without either, LastGood is off).
	LastGoodNamespace string
}

// AddFlags binds the options to a flag set.
func (o *PolicyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Dir, "policy-dir", "", "directory with a policy bundle laid out like policies/, used instead of the embedded one and reloaded when it changes")
	fs.StringVar(&o.OverlayDir, "policy-overlay-dir", "", "directory of files laid out like policies/ layered over the policy bundle (each replaces the bundle's file of the same path, e.g. config/install.yaml), reloaded when they change")
	fs.DurationVar(&o.PollInterval, "policy-poll-interval", 2*time.Second, "how often --policy-dir and --policy-overlay-dir are checked for changes")
	fs.IntVar(&o.DecisionCacheSize, "decision-cache-size", policy.DefaultDecisionCacheSize, "how many mutation, validation and plan decisions are each remembered by their input (repeated requests skip evaluation); 0 disables")
	fs.IntVar(&o.DecisionCacheBytes, "policy-decision-cache-bytes", policy.DefaultDecisionCacheBytes, fmt.Sprintf("memory budget in bytes of the decision caches, shared by mutations, validations and plans; keyed by a hash of the input, inputs over %d KiB are never cached; 0 disables", policy.MaxCachedInputBytes>>10))
	fs.StringVar(&o.LastGood, "policy-last-good", DefaultLastGoodConfigMap, "ConfigMap where the last --policy-dir bundle that loaded is saved; a replica whose --policy-dir does not load at start serves it (and keeps reloading) instead of failing; empty disables")
	fs.StringVar(&o.LastGoodNamespace, "policy-last-good-namespace", "", "namespace of --policy-last-good (default: $POD_NAMESPACE, or the namespace nsprov runs in)")
	fs.StringVar(&o.Evaluator, "policy-evaluator", policy.EvaluatorCompiled, "how policies are evaluated: compiled (OPA's planner output, run by nsprov; falls back to topdown when a policy cannot be compiled) or topdown (OPA's evaluator)")
}

// Validate checks the options.
func (o *PolicyOptions) Validate() error {
	var errs []error
	if o.Dir != "" {
		if info, err := os.Stat(o.Dir); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--policy-dir %q is not a directory", o.Dir))
		}
	}
	if o.OverlayDir != "" {
		if info, err := os.Stat(o.OverlayDir); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--policy-overlay-dir %q is not a directory", o.OverlayDir))
		}
	}
	if o.PollInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("--policy-poll-interval %s is too short; use at least 100ms", o.PollInterval))
	}
	if o.DecisionCacheSize < 0 {
		errs = append(errs, fmt.Errorf("--decision-cache-size %d must not be negative; use 0 to disable the cache", o.DecisionCacheSize))
	}
	if o.DecisionCacheBytes < 0 {
		errs = append(errs, fmt.Errorf("--policy-decision-cache-bytes %d must not be negative; use 0 to disable the cache", o.DecisionCacheBytes))
	}
	if o.LastGood != "" {
		if msgs := validation.IsDNS1123Subdomain(o.LastGood); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("--policy-last-good %q is not a ConfigMap name: %s", o.LastGood, strings.Join(msgs, "; ")))
		}
	}
	if o.Evaluator != policy.EvaluatorCompiled && o.Evaluator != policy.EvaluatorTopdown {
		errs = append(errs, fmt.Errorf("--policy-evaluator %q is not known; use %s or %s", o.Evaluator, policy.EvaluatorCompiled, policy.EvaluatorTopdown))
	}
	return errors.Join(errs...)
}

// NewStore loads the bundle (Dir's, or the embedded one, with OverlayDir
// layered over it) into a store that watches both with these options. A
// bundle that does not load is an error.
func (o *PolicyOptions) NewStore(ctx context.Context) (*policy.Store, error) {
	store, err := policy.NewLayeredStore(ctx, o.Dir, o.OverlayDir)
	if err != nil {
		return nil, err
	}
	return o.configure(store)
}

// configure applies the options to a new store.
func (o *PolicyOptions) configure(store *policy.Store) (*policy.Store, error) {
	store.SetInterval(o.PollInterval)
	store.SetDecisionCacheSize(o.DecisionCacheSize)
	store.SetDecisionCacheBytes(o.DecisionCacheBytes)
	if err := store.SetEvaluator(o.Evaluator); err != nil {
		return nil, err
	}
	return store, nil
}

// ControllerOptions are the provisioning controller and its leader election.
type ControllerOptions struct {
	// Enabled runs the provisioning controller (leader-elected) beside the webhooks.
	Enabled bool
	// ArgoNamespace is where the WorkflowTemplate lives and Workflows are created.
	ArgoNamespace string
	// WorkflowTemplate is the WorkflowTemplate the controller runs.
	WorkflowTemplate string
	// Identity is the username nsprov evaluates plans and the background
	// audit as; the policy data must list it among nsprov's own identities
	// (manager_users).
	Identity string
	// ConcurrentReconciles is how many namespaces the controller works on at once.
	ConcurrentReconciles int
	// RetryBaseDelay is the wait before the first retry of a failed
	// provisioning; each further retry waits twice as long, at most
	// RetryMaxDelay.
	RetryBaseDelay, RetryMaxDelay time.Duration
	// MaxRunningWorkflows bounds the nsprov Workflows unfinished at once.
	MaxRunningWorkflows int
	// WorkflowStartRate bounds how many Workflows start per second, with
	// bursts of WorkflowStartBurst.
	WorkflowStartRate  float64
	WorkflowStartBurst int
	// LeaderElect makes one replica at a time run the controller and the
	// background audit.
	LeaderElect bool
	// LeaderElectionNamespace holds the leader election Lease (default: the
	// namespace nsprov runs in).
	LeaderElectionNamespace string
}

// AddFlags binds the options to a flag set.
func (o *ControllerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "controller", true, "run the provisioning controller beside the webhooks")
	fs.StringVar(&o.ArgoNamespace, "argo-namespace", "argo", "namespace of the WorkflowTemplate and of the Workflows nsprov creates")
	fs.StringVar(&o.WorkflowTemplate, "workflow-template", trigger.TemplateName, "WorkflowTemplate the controller runs for each namespace")
	fs.StringVar(&o.Identity, "identity", contract.DefaultUsername, "username the controller evaluates plans as (listed in the policy's manager_users)")
	fs.IntVar(&o.ConcurrentReconciles, "concurrent-reconciles", 4, "how many namespaces the controller reconciles at once")
	fs.DurationVar(&o.RetryBaseDelay, "retry-base-delay", 30*time.Second, "wait before the first retry of a failed provisioning; each further retry waits twice as long")
	fs.DurationVar(&o.RetryMaxDelay, "retry-max-delay", time.Hour, "longest wait between retries of a failed provisioning")
	fs.IntVar(&o.MaxRunningWorkflows, "max-running-workflows", 128, "most nsprov Workflows unfinished at once; namespaces beyond wait with reason Queued (0: no bound)")
	fs.Float64Var(&o.WorkflowStartRate, "workflow-start-rate", 4, "most Workflows started per second, below Argo's default throughput of about 270 a minute (0: no bound)")
	fs.IntVar(&o.WorkflowStartBurst, "workflow-start-burst", 10, "Workflows that may start at once before --workflow-start-rate applies")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "elect one replica to run the controller; the webhooks run on every replica")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the namespace nsprov runs in)")
}

// Validate checks the options.
func (o *ControllerOptions) Validate() error {
	var errs []error
	if o.Enabled && (o.ArgoNamespace == "" || o.WorkflowTemplate == "" || o.Identity == "") {
		errs = append(errs, errors.New("--argo-namespace, --workflow-template and --identity must not be empty while --controller is on"))
	}
	if o.Enabled && o.ConcurrentReconciles < 1 {
		errs = append(errs, fmt.Errorf("--concurrent-reconciles %d must be at least 1", o.ConcurrentReconciles))
	}
	if o.Enabled && (o.RetryBaseDelay <= 0 || o.RetryMaxDelay < o.RetryBaseDelay) {
		errs = append(errs, fmt.Errorf("--retry-base-delay %s must be positive and at most --retry-max-delay %s", o.RetryBaseDelay, o.RetryMaxDelay))
	}
	if o.Enabled && (o.MaxRunningWorkflows < 0 || o.WorkflowStartRate < 0) {
		errs = append(errs, fmt.Errorf("--max-running-workflows %d and --workflow-start-rate %g must not be negative (0 is no bound)", o.MaxRunningWorkflows, o.WorkflowStartRate))
	}
	if o.Enabled && o.WorkflowStartRate > 0 && o.WorkflowStartBurst < 1 {
		errs = append(errs, fmt.Errorf("--workflow-start-burst %d must be at least 1 while --workflow-start-rate is set", o.WorkflowStartBurst))
	}
	return errors.Join(errs...)
}

// AuditOptions are the decision log, the denial report and the background
// audit.
type AuditOptions struct {
	// ReportSize is how many denial results the ClusterReport
	// nsprov-admission-denials keeps (newest first).
	ReportSize int
	// QueueSize bounds the denial results waiting to be written; when it
	// is full the oldest are dropped and counted.
	QueueSize int
	// Interval is the period of the background audit of existing
	// namespaces (leader only); 0 audits only at start and on policy changes.
	Interval time.Duration
	// DecisionLog is where the JSON decision log goes: stdout, stderr, off or
	// a file path (appended to).
	DecisionLog string
}

// AddFlags binds the options to a flag set.
func (o *AuditOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.ReportSize, "audit-report-size", audit.DefaultReportSize, "denial results kept in ClusterReport "+audit.DenialsReportName+" (newest first; the default keeps it well under etcd's object size limit)")
	fs.IntVar(&o.QueueSize, "audit-queue-size", audit.DefaultQueueSize, "denial results that may wait to be written to the report; when full, the oldest are dropped and counted")
	fs.DurationVar(&o.Interval, "audit-interval", 10*time.Minute, "period of the background audit of existing namespaces into ClusterReport "+audit.NamespaceAuditReportName+" (leader only; it also runs at start and when the policy changes); 0 disables periodic runs")
	fs.StringVar(&o.DecisionLog, "decision-log", "stdout", "where every admission decision is written as a JSON line: stdout, stderr, off, or a file path")
}

// Validate checks the options.
func (o *AuditOptions) Validate() error {
	var errs []error
	if o.ReportSize < 1 {
		errs = append(errs, fmt.Errorf("--audit-report-size %d must be at least 1", o.ReportSize))
	}
	if o.QueueSize < 1 {
		errs = append(errs, fmt.Errorf("--audit-queue-size %d must be at least 1", o.QueueSize))
	}
	if o.Interval < 0 || (o.Interval > 0 && o.Interval < 10*time.Second) {
		errs = append(errs, fmt.Errorf("--audit-interval %s must be 0 (no periodic audit) or at least 10s", o.Interval))
	}
	switch o.DecisionLog {
	case "stdout", "stderr", "off":
	case "":
		errs = append(errs, errors.New("--decision-log must not be empty; use stdout, stderr, off or a file path"))
	default:
		if info, err := os.Stat(filepath.Dir(o.DecisionLog)); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--decision-log %q: the directory %s does not exist", o.DecisionLog, filepath.Dir(o.DecisionLog)))
		}
	}
	return errors.Join(errs...)
}

// OpenDecisionLog opens the decision log: stdout or stderr, nil for off, or
// the file (appended to). close is a no-op for the standard streams.
func (o *AuditOptions) OpenDecisionLog(stdout, stderr io.Writer) (w io.Writer, close func(), err error) {
	switch o.DecisionLog {
	case "off":
		return nil, func() {}, nil
	case "stdout":
		return stdout, func() {}, nil
	case "stderr":
		return stderr, func() {}, nil
	}
	f, err := os.OpenFile(o.DecisionLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--decision-log: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// LoggingOptions are the process log.
type LoggingOptions struct {
	// Format is json or text.
	Format string
	// Level is the verbosity: 0 logs errors; with the decision log off, 0
	// also logs denials and 1 every decision.
	Level int
}

// AddFlags binds the options to a flag set.
func (o *LoggingOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Format, "log-format", "json", "log format: json or text")
	fs.IntVarP(&o.Level, "verbosity", "v", 0, "log verbosity: 0 logs errors, 1 more; with --decision-log off, 0 also logs denials and 1 every admission decision")
}

// Validate checks the options.
func (o *LoggingOptions) Validate() error {
	var errs []error
	if o.Format != "json" && o.Format != "text" {
		errs = append(errs, fmt.Errorf("--log-format %q is not supported; use json or text", o.Format))
	}
	if o.Level < 0 {
		errs = append(errs, fmt.Errorf("--verbosity %d must not be negative; use 0 or 1", o.Level))
	}
	return errors.Join(errs...)
}

// Logger builds the process logger, writing to w.
func (o *LoggingOptions) Logger(w io.Writer) logr.Logger {
	return zap.New(
		zap.WriteTo(w),
		zap.UseDevMode(o.Format == "text"),
		zap.Level(zapcore.Level(-o.Level)),
	)
}
