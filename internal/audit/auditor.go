package audit

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
)

// Metrics of the background audit.
var (
	namespaceAuditViolations = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_namespace_audit_violations",
		Help: "Violations (namespace and rule) that the last background audit found among existing namespaces.",
	})
	namespaceAuditRuns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_namespace_audit_runs_total",
		Help: "Background audits of existing namespaces, by result (success or error).",
	}, []string{"result"})
	namespaceAuditLastRun = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_namespace_audit_last_run_timestamp_seconds",
		Help: "Unix time of the last background audit that completed.",
	})
)

// AuditorOptions configure the background audit.
type AuditorOptions struct {
	// ReportName is the ClusterReport the audit publishes (default
	// nsprov-namespace-audit).
	ReportName string
	// ReportSize bounds the results of the report (default
	// DefaultReportSize); violations beyond it are counted in the report's
	// nsprov.io/omitted-violations annotation.
	ReportSize int
	// Interval is the period of the audit; 0 audits only at start and when
	// the active policy changes.
	Interval time.Duration
	// Username is the identity the policy is evaluated as (default
	// contract.DefaultUsername, nsprov's own service account), with the
	// groups contract.As gives it, as the provisioning controller does. It
	// must be one of nsprov's own identities (the policy's manager_users),
	// and not an admin: see the package documentation.
	Username string
	// Logger receives the auditor's messages (default: discarded).
	Logger logr.Logger
}

func (o AuditorOptions) withDefaults() AuditorOptions {
	if o.ReportName == "" {
		o.ReportName = NamespaceAuditReportName
	}
	if o.ReportSize <= 0 {
		o.ReportSize = DefaultReportSize
	}
	if o.Username == "" {
		o.Username = contract.DefaultUsername
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return o
}

// Auditor re-evaluates every requested namespace against the active policy
// and publishes the violations in a ClusterReport: at start, whenever the
// active policy revision changes, and every Interval. Only the leader runs it
// (NeedLeaderElection is true).
type Auditor struct {
	client client.Client
	store  *policy.Store
	o      AuditorOptions
	as     contract.Identity
	notice *crdNotice
}

// NewAuditor returns an auditor of the namespaces of cfg's cluster against
// the policies of store.
func NewAuditor(cfg *rest.Config, store *policy.Store, o AuditorOptions) (*Auditor, error) {
	rc := rest.CopyConfig(cfg)
	rc.QPS, rc.Burst = 20, 40
	rc.UserAgent = "nsprov-audit"
	c, err := client.New(rc, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the audit client: %w", err)
	}
	registerMetrics()
	o = o.withDefaults()
	return &Auditor{client: c, store: store, o: o, as: contract.As(o.Username), notice: noticeFor(cfg)}, nil
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable.
func (a *Auditor) NeedLeaderElection() bool { return true }

// Start audits until ctx ends. It implements controller-runtime's Runnable.
func (a *Auditor) Start(ctx context.Context) error {
	log := a.o.Logger
	var periodic <-chan time.Time
	if a.o.Interval > 0 {
		t := time.NewTicker(a.o.Interval)
		defer t.Stop()
		periodic = t.C
	}
	audited := ""              // the revision of the last successful audit
	var retry <-chan time.Time // set while a failed audit waits to be retried
	backoff := time.Duration(0)
	run := func(reason string) {
		rev := a.store.Bundle().Revision
		res, err := a.Run(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, 5*time.Second), 5*time.Minute)
			retry = time.After(backoff)
			if err != errNoCRD {
				log.Error(err, "namespace audit failed; retrying", "reason", reason, "retryIn", backoff.String())
			}
			return
		}
		audited, backoff, retry = rev, 0, nil
		log.Info("namespace audit done", "reason", reason, "policyRevision", res.Revision,
			"namespaces", res.Namespaces, "violations", res.Violations, "report", a.o.ReportName)
	}
	changed := a.store.Changed()
	run("start")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-periodic:
			run("periodic")
		case <-changed:
			changed = a.store.Changed()
			// While a retry is pending, it audits the newest policy.
			if a.store.Bundle().Revision != audited && retry == nil {
				run("policy changed")
			}
		case <-retry:
			retry = nil
			run("retry")
		}
	}
}

// AuditResult sums up one audit.
type AuditResult struct {
	// Revision is the policy revision the namespaces were evaluated against.
	Revision string
	// Namespaces is how many requested namespaces were evaluated.
	Namespaces int
	// Violations is how many (namespace, rule) pairs violate the policy.
	Violations int
	// Errors is how many namespaces could not be evaluated.
	Errors int
}

// Run audits every requested namespace once and replaces the report's
// results with what it found.
func (a *Auditor) Run(ctx context.Context) (*AuditResult, error) {
	b := a.store.Bundle()
	now := time.Now()
	res := &AuditResult{Revision: b.Revision}
	var results []reportsv1alpha1.ReportResult
	list := &corev1.NamespaceList{}
	opts := []client.ListOption{client.Limit(500)}
	for {
		if err := a.client.List(ctx, list, opts...); err != nil {
			namespaceAuditRuns.WithLabelValues("error").Inc()
			return nil, fmt.Errorf("listing namespaces: %w", err)
		}
		for i := range list.Items {
			ns := &list.Items[i]
			if !contract.IsRequested(ns) || ns.DeletionTimestamp != nil {
				continue
			}
			res.Namespaces++
			found, err := a.evaluate(ctx, b, ns, now)
			if err != nil {
				res.Errors++
			}
			results = append(results, found...)
		}
		if list.Continue == "" {
			break
		}
		opts = []client.ListOption{client.Limit(500), client.Continue(list.Continue)}
	}
	res.Violations = len(results) - res.Errors
	if err := a.publish(ctx, b.Revision, res, results, now); err != nil {
		namespaceAuditRuns.WithLabelValues("error").Inc()
		return nil, err
	}
	namespaceAuditRuns.WithLabelValues("success").Inc()
	namespaceAuditViolations.Set(float64(res.Violations))
	namespaceAuditLastRun.Set(float64(now.Unix()))
	return res, nil
}

// AuditRequest is the policy input of an audit of ns: an UPDATE that
// changes nothing (object == oldObject), by the given identity, dry-run since
// nothing is written.
func AuditRequest(ns *corev1.Namespace, as contract.Identity) *policy.Request {
	return &policy.Request{
		UID:       "nsprov-audit-" + string(ns.UID),
		Operation: "UPDATE",
		Username:  as.Username,
		Groups:    as.Groups,
		DryRun:    true,
		Object:    ns,
		OldObject: ns,
	}
}

// evaluate validates one namespace and returns its results: one per
// violated rule, or one error result when the policy fails.
func (a *Auditor) evaluate(ctx context.Context, b *policy.Bundle, ns *corev1.Namespace, now time.Time) ([]reportsv1alpha1.ReportResult, error) {
	props := map[string]string{
		PropTeam:           truncate(ns.Annotations[contract.TeamAnnotation], admission.MaxFieldBytes),
		PropEnvironment:    truncate(ns.Annotations[contract.EnvironmentAnnotation], admission.MaxFieldBytes),
		PropRequestedBy:    truncate(ns.Annotations[contract.RequestedByAnnotation], admission.MaxFieldBytes),
		PropPolicyRevision: b.Revision,
		PropTime:           now.UTC().Format(time.RFC3339),
	}
	result := func(rule, kind, msg string) reportsv1alpha1.ReportResult {
		return reportsv1alpha1.ReportResult{
			Source: Source, Policy: truncate(rule, admission.MaxFieldBytes), Rule: truncate(rule, admission.MaxFieldBytes), Category: CategoryAudit, Timestamp: timestamp(now),
			Result: reportsv1alpha1.Result(kind), Subjects: []corev1.ObjectReference{namespaceRef(ns.Name, string(ns.UID))},
			Description: truncate(msg, maxMessage), Properties: maps.Clone(props),
		}
	}
	v, err := b.Validate(ctx, AuditRequest(ns, a.as))
	if err != nil {
		return []reportsv1alpha1.ReportResult{result("policy-evaluation", "error", err.Error())}, err
	}
	rules, messages := byRule(v.Violations)
	out := make([]reportsv1alpha1.ReportResult, len(rules))
	for i, rule := range rules {
		out[i] = result(rule, "fail", messages[rule])
	}
	return out, nil
}

// auditKey identifies a namespace audit result: namespace and rule.
func auditKey(r *reportsv1alpha1.ReportResult) string {
	name := ""
	if len(r.Subjects) > 0 {
		name = r.Subjects[0].Name
	}
	return name + "/" + r.Rule
}

// publish replaces the report's results. A violation that was there before
// keeps its timestamp and time, which tell since when it has been there.
func (a *Auditor) publish(ctx context.Context, revision string, res *AuditResult, results []reportsv1alpha1.ReportResult, now time.Time) error {
	sort.Slice(results, func(i, j int) bool { return auditKey(&results[i]) < auditKey(&results[j]) })
	omitted := 0
	if len(results) > a.o.ReportSize {
		omitted = len(results) - a.o.ReportSize
		results = results[:a.o.ReportSize]
		a.o.Logger.Info("more violations than the report keeps; the rest are counted in an annotation",
			"report", a.o.ReportName, "kept", len(results), "omitted", omitted)
	}
	name := a.o.ReportName
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		report := &reportsv1alpha1.ClusterReport{}
		err := a.client.Get(ctx, client.ObjectKey{Name: name}, report)
		creating := apierrors.IsNotFound(err)
		switch {
		case creating:
			report = newReport(name, a.o.ReportSize)
		case err != nil:
			return err
		}
		since := map[string]reportsv1alpha1.ReportResult{}
		for i := range report.Results {
			since[auditKey(&report.Results[i])] = report.Results[i]
		}
		out := make([]reportsv1alpha1.ReportResult, len(results))
		for i := range results {
			out[i] = results[i]
			if old, ok := since[auditKey(&out[i])]; ok && old.Description == out[i].Description {
				out[i].Timestamp = old.Timestamp
				out[i].Properties[PropTime] = old.Properties[PropTime]
			}
		}
		report.Results = out
		report.Summary = summarize(out)
		report.Source = Source
		if report.Annotations == nil {
			report.Annotations = map[string]string{}
		}
		report.Annotations[contract.ReportPolicyRevisionAnnotation] = revision
		report.Annotations[contract.ReportAuditedNamespacesAnnotation] = strconv.Itoa(res.Namespaces)
		report.Annotations[contract.ReportLastAuditAnnotation] = now.UTC().Format(time.RFC3339)
		if omitted > 0 {
			report.Annotations[contract.ReportOmittedViolationsAnnotation] = strconv.Itoa(omitted)
		} else {
			delete(report.Annotations, contract.ReportOmittedViolationsAnnotation)
		}
		if creating {
			err = a.client.Create(ctx, report)
			if apierrors.IsAlreadyExists(err) {
				// Created meanwhile: read it and update, as for a conflict.
				return apierrors.NewConflict(reportsv1alpha1.Resource("clusterreports"), name, err)
			}
			if apierrors.IsNotFound(err) {
				return errNoCRD
			}
		} else {
			err = a.client.Update(ctx, report)
		}
		if apierrors.IsConflict(err) {
			reportWritesTotal.WithLabelValues(name, "conflict").Inc()
		}
		return err
	})
	switch {
	case err == nil:
		reportWritesTotal.WithLabelValues(name, "success").Inc()
		a.notice.present(a.o.Logger)
		return nil
	case isNoCRD(err, false):
		a.notice.absent(a.o.Logger)
		return errNoCRD
	default:
		reportWritesTotal.WithLabelValues(name, "error").Inc()
		return fmt.Errorf("writing ClusterReport %s: %w", name, err)
	}
}
