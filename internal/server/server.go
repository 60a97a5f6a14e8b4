package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/trigger"
)

// leaderElectionID names the Lease the replicas elect their leader with.
const leaderElectionID = "nsprov-controller"

// Dependencies are what a server needs besides its options.
type Dependencies struct {
	// Logger receives the server's logs (default: discarded).
	Logger logr.Logger
	// DecisionLog receives a JSON line per admission decision; nil writes
	// none. AuditOptions.OpenDecisionLog opens the one --decision-log names.
	DecisionLog io.Writer
	// Recorder, when set, receives every admission decision instead of the
	// audit sink: then no decision log, denial report or background audit
	// runs. Tests use it to see the decisions themselves.
	Recorder admission.Recorder
}

// Server is nsprov's manager with everything registered.
type Server struct {
	mgr ctrl.Manager
	log logr.Logger
	o   Options
}

// New builds nsprov's server for the cluster of cfg, serving the policies of
// store: the webhooks (on every replica) record their decisions to the audit
// sink, whose writer keeps the denial report; the serving certificate comes
// from files or is self-managed; the store's directory is watched and its
// reloads reported; the provisioning controller (when enabled and Argo's
// kinds are served) and the background audit run on the leader. Several
// servers may run in one process, as in tests and `make dev`.
func New(cfg *rest.Config, store *policy.Store, o Options, deps Dependencies) (*Server, error) {
	log := deps.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.Kube.QPS, o.Kube.Burst
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := wfv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	serving, err := o.Webhook.servingCertificates(cfg, scheme)
	if err != nil {
		return nil, err
	}
	tlsOpts := append([]func(*tls.Config){func(c *tls.Config) { c.MinVersion = tls.VersionTLS12 }}, serving.tlsOpts...)
	if o.Webhook.ClientCAFile != "" {
		cas, err := newClientCAs(o.Webhook.ClientCAFile, log.WithName("client-ca"))
		if err != nil {
			return nil, err
		}
		tlsOpts = append(tlsOpts, cas.tlsOption)
	}
	server := webhook.NewServer(webhook.Options{
		Host:     o.Webhook.Host,
		Port:     o.Webhook.Port,
		CertDir:  o.Webhook.CertDir,
		CertName: o.Webhook.CertName,
		KeyName:  o.Webhook.KeyName,
		TLSOpts:  tlsOpts,
	})
	// Without Argo the webhooks still guard namespace requests; only
	// provisioning is off.
	controller := o.Controller.Enabled
	if controller {
		dc, err := discovery.NewDiscoveryClientForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("creating a discovery client: %w", err)
		}
		if err := trigger.ArgoInstalled(dc); err != nil {
			log.Error(err, "provisioning is off; the admission webhooks keep serving")
			controller = false
		}
	}
	// The informers keep only what nsprov reads (cache.go).
	cacheOpts := cacheOptions(o.Controller.ArgoNamespace, controller)
	// The provisioning controller and the background audit run on the leader.
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  scheme,
		Logger:                  log,
		WebhookServer:           server,
		Metrics:                 metricsOptions(o.Endpoints),
		HealthProbeBindAddress:  o.Endpoints.ProbeAddr,
		BaseContext:             func() context.Context { return logr.NewContext(context.Background(), log) },
		LeaderElection:          o.Controller.LeaderElect,
		LeaderElectionID:        leaderElectionID,
		LeaderElectionNamespace: o.Controller.LeaderElectionNamespace,
		Cache:                   cacheOpts,
		// Controller names are unique per manager; several servers share
		// the process in tests and `make dev`.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	s := &Server{mgr: mgr, log: log, o: o}
	// nsprov's own identity; the controller and the auditor evaluate the
	// policy with the groups contract.As gives it.
	as := o.Controller.Identity
	rec := deps.Recorder
	if rec == nil {
		if rec, err = s.addAudit(cfg, store, deps.DecisionLog, as, log.WithName("audit")); err != nil {
			return nil, err
		}
	}
	// The manager runs the webhook server only once it has been asked for it.
	registerWebhooks(mgr.GetWebhookServer(), store, rec, o.Webhook.ClientCAFile != "")
	if err := serving.register(mgr, metrics.Registry); err != nil {
		return nil, err
	}
	if err := registerReloadMetrics(metrics.Registry); err != nil {
		return nil, err
	}
	if err := mgr.Add(newReloadReporter(store, o.Policy.Dir, mgr.GetEventRecorder("nsprov"), log)); err != nil {
		return nil, err
	}
	if err := mgr.Add(everyReplica(store.Watch)); err != nil {
		return nil, err
	}
	lastGood, err := o.Policy.lastGoodConfigMap(cfg, scheme)
	if err != nil {
		return nil, err
	}
	if lastGood != nil {
		if err := mgr.Add(&lastGoodSaver{store: store, cm: lastGood, log: log.WithName("policy"), retry: 10 * time.Second}); err != nil {
			return nil, err
		}
	} else if o.Policy.Dir != "" && o.Policy.LastGood != "" {
		log.Info("no namespace for --policy-last-good (no --policy-last-good-namespace, $POD_NAMESPACE or service account): the last good policy is not saved")
	}
	if controller {
		if err := addController(mgr, store, o.Controller, as); err != nil {
			return nil, fmt.Errorf("setting up the provisioning controller: %w", err)
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return nil, err
	}
	return s, nil
}

// Start runs the server until ctx ends.
func (s *Server) Start(ctx context.Context) error {
	o := s.o
	s.log.Info("starting", "webhookPort", o.Webhook.Port, "certMode", o.Webhook.Certs.Mode, "certDir", o.Webhook.CertDir)
	return s.mgr.Start(ctx)
}

// everyReplica runs on every replica, leader or not.
type everyReplica func(context.Context) error

func (f everyReplica) Start(ctx context.Context) error { return f(ctx) }
func (everyReplica) NeedLeaderElection() bool          { return false }

// registerWebhooks serves the mutating and validating handlers on server;
// every decision goes to rec, marked with whether the caller presented a
// verified client certificate (only possible when the server verifies
// them: verifying).
func registerWebhooks(server webhook.Server, store *policy.Store, rec admission.Recorder, verifying bool) {
	rec = markingRecorder{next: rec}
	// The per-request logger adds the request's values only when a line is
	// written (controller-runtime's default adds them to every request).
	mutate := &webhook.Admission{Handler: &admission.Mutator{Policies: store, Recorder: rec}, WithContextFunc: withClientVerified(verifying), LogConstructor: admission.RequestLogger}
	validate := &webhook.Admission{Handler: &admission.Validator{Policies: store, Recorder: rec}, WithContextFunc: withClientVerified(verifying), LogConstructor: admission.RequestLogger}
	server.Register(admission.MutatePath, mutate.WithRecoverPanic(true))
	server.Register(admission.ValidatePath, validate.WithRecoverPanic(true))
}

// addAudit builds the audit sink that the webhooks record to, and adds its
// writer (every replica) and the background auditor (leader only) to the
// manager.
func (s *Server) addAudit(cfg *rest.Config, store *policy.Store, decisionLog io.Writer, as string, log logr.Logger) (admission.Recorder, error) {
	o := s.o.Audit
	sink := audit.NewSink(audit.Options{
		DecisionLog: decisionLog, Logger: log, ReportSize: o.ReportSize, QueueSize: o.QueueSize,
	})
	audit.ObservePolicies(store)
	writer, err := audit.NewWriter(cfg, sink)
	if err != nil {
		return nil, err
	}
	auditor, err := audit.NewAuditor(cfg, store, audit.AuditorOptions{
		ReportSize: o.ReportSize, Interval: o.Interval, Username: as, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	return sink, errors.Join(s.mgr.Add(writer), s.mgr.Add(auditor))
}

// addController registers the provisioning controller with mgr.
func addController(mgr manager.Manager, store *policy.Store, o ControllerOptions, as string) error {
	r := &trigger.Reconciler{
		Client:   mgr.GetClient(),
		Policies: store,
		Events:   mgr.GetEventRecorder("nsprov"),
		Options:  trigger.Options{ArgoNamespace: o.ArgoNamespace, TemplateName: o.WorkflowTemplate},
		Username: as,

		MaxConcurrentReconciles: o.ConcurrentReconciles,
		RetryBase:               o.RetryBaseDelay,
		RetryMax:                o.RetryMaxDelay,
		Pacer:                   trigger.NewPacer(o.MaxRunningWorkflows, o.WorkflowStartRate, o.WorkflowStartBurst),
	}
	return r.SetupWithManager(mgr)
}

// metricsOptions is the metrics listener, with Go's profiling endpoints when
// they are asked for.
func metricsOptions(o EndpointOptions) metricsserver.Options {
	m := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.Pprof {
		m.ExtraHandlers = map[string]http.Handler{
			"/debug/pprof/":        http.HandlerFunc(pprof.Index),
			"/debug/pprof/cmdline": http.HandlerFunc(pprof.Cmdline),
			"/debug/pprof/profile": http.HandlerFunc(pprof.Profile),
			"/debug/pprof/symbol":  http.HandlerFunc(pprof.Symbol),
			"/debug/pprof/trace":   http.HandlerFunc(pprof.Trace),
		}
	}
	return m
}
