package audit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// ErrNoReport says a ClusterReport of nsprov's does not exist (yet).
var ErrNoReport = errors.New("the report does not exist")

// ErrNotInstalled says the cluster does not serve the OpenReports
// ClusterReport kind, so nsprov keeps no report.
var ErrNotInstalled = fmt.Errorf("OpenReports is not installed in this cluster (no ClusterReport kind), so nsprov keeps no report; "+
	"denials are in nsprov's decision log and in Events: kubectl get events -A --field-selector reason=%s", EventReason)

// Reader reads nsprov's ClusterReports back: the denied requests and the
// namespace audit, as `nsprov audit` prints them.
type Reader struct {
	client client.Reader
}

// NewReader returns a reader of the reports of cfg's cluster.
func NewReader(cfg *rest.Config) (*Reader, error) {
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the report client: %w", err)
	}
	return &Reader{client: c}, nil
}

// Report reads the ClusterReport name. The error wraps ErrNoReport when it
// does not exist and is ErrNotInstalled when the kind is not served.
func (r *Reader) Report(ctx context.Context, name string) (*reportsv1alpha1.ClusterReport, error) {
	report := &reportsv1alpha1.ClusterReport{}
	err := r.client.Get(ctx, client.ObjectKey{Name: name}, report)
	switch {
	case meta.IsNoMatchError(err):
		return nil, ErrNotInstalled
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("ClusterReport %s: %w", name, ErrNoReport)
	case err != nil:
		return nil, fmt.Errorf("reading ClusterReport %s: %w", name, err)
	}
	return report, nil
}

// Denials reads the denied requests of the report DenialsReportName,
// newest first.
func (r *Reader) Denials(ctx context.Context) ([]Denial, error) {
	report, err := r.Report(ctx, DenialsReportName)
	if err != nil {
		return nil, err
	}
	return DenialsOf(report), nil
}

// NamespaceAudit reads the last namespace audit from the report
// NamespaceAuditReportName.
func (r *Reader) NamespaceAudit(ctx context.Context) (*NamespaceAudit, error) {
	report, err := r.Report(ctx, NamespaceAuditReportName)
	if err != nil {
		return nil, err
	}
	return NamespaceAuditOf(report), nil
}

// Denial is one denied request and the rules it broke.
type Denial struct {
	// Time is when the request was denied (UTC).
	Time time.Time
	// UID is the admission request's UID.
	UID string
	// User is who sent the request.
	User string
	// Namespace is the name of the namespace requested.
	Namespace string
	// Operation is CREATE or UPDATE.
	Operation string
	// Rules are the violated rules, sorted.
	Rules []string
}

// DenialsOf groups the results of a denials report by request (one result
// per violated rule), newest first.
func DenialsOf(report *reportsv1alpha1.ClusterReport) []Denial {
	byUID := map[string]int{}
	var rows []Denial
	for i := range report.Results {
		r := &report.Results[i]
		uid := r.Properties[PropRequestUID]
		at, ok := byUID[uid]
		if !ok {
			row := Denial{
				Time: resultTime(r).UTC(), UID: uid,
				User: r.Properties[PropUser], Operation: r.Properties[PropOperation],
			}
			if len(r.Subjects) > 0 {
				row.Namespace = r.Subjects[0].Name
			}
			at = len(rows)
			byUID[uid] = at
			rows = append(rows, row)
		}
		rows[at].Rules = append(rows[at].Rules, r.Rule)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].Time.Equal(rows[j].Time) {
			return rows[i].Time.After(rows[j].Time)
		}
		return rows[i].UID < rows[j].UID
	})
	for i := range rows {
		sort.Strings(rows[i].Rules)
	}
	return rows
}

// NamespaceAudit is the outcome of the last background audit.
type NamespaceAudit struct {
	// PolicyRevision is the policy revision the namespaces were evaluated against.
	PolicyRevision string
	// AuditedNamespaces is how many requested namespaces were evaluated, as
	// the report says it.
	AuditedNamespaces string
	// LastAudit is when the audit ran (RFC 3339), as the report says it.
	LastAudit string
	// Namespaces are the namespaces that break the policy, by name.
	Namespaces []NamespaceViolations
}

// NamespaceViolations is an existing namespace and the rules it breaks.
type NamespaceViolations struct {
	// Namespace is the namespace's name.
	Namespace string
	// Team is its nsprov.io/team annotation.
	Team string
	// Since is when the audit first found its oldest violation (UTC).
	Since time.Time
	// Rules are the rules it breaks, sorted.
	Rules []string
}

// NamespaceAuditOf reads a namespace audit report: a row per namespace
// with the rules it breaks.
func NamespaceAuditOf(report *reportsv1alpha1.ClusterReport) *NamespaceAudit {
	byNS := map[string]int{}
	var rows []NamespaceViolations
	for i := range report.Results {
		r := &report.Results[i]
		name := ""
		if len(r.Subjects) > 0 {
			name = r.Subjects[0].Name
		}
		t := resultTime(r).UTC()
		at, ok := byNS[name]
		if !ok {
			at = len(rows)
			byNS[name] = at
			rows = append(rows, NamespaceViolations{Namespace: name, Team: r.Properties[PropTeam], Since: t})
		}
		if t.Before(rows[at].Since) {
			rows[at].Since = t
		}
		rows[at].Rules = append(rows[at].Rules, r.Rule)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Namespace < rows[j].Namespace })
	for i := range rows {
		sort.Strings(rows[i].Rules)
	}
	return &NamespaceAudit{
		PolicyRevision:    report.Annotations[contract.ReportPolicyRevisionAnnotation],
		AuditedNamespaces: report.Annotations[contract.ReportAuditedNamespacesAnnotation],
		LastAudit:         report.Annotations[contract.ReportLastAuditAnnotation],
		Namespaces:        rows,
	}
}
