package audit

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/nsprov/nsprov/internal/contract"
)

// Metrics of the writes of nsprov's ClusterReports, by the writer and the
// auditor.
var (
	reportWritesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_report_writes_total",
		Help: "Writes of nsprov's ClusterReports by report and result: success, conflict (another replica wrote first; retried on the newer object) or error.",
	}, []string{"report", "result"})
)

// Names of nsprov's ClusterReports.
const (
	// DenialsReportName holds the most recent denied requests.
	DenialsReportName = "nsprov-admission-denials"
	// NamespaceAuditReportName holds the existing namespaces that violate
	// the active policy.
	NamespaceAuditReportName = "nsprov-namespace-audit"
)

// Source is the source of the reports and of their results.
const Source = "nsprov"

// Categories of the results.
const (
	CategoryAdmission = "admission"
	CategoryAudit     = "namespace audit"
)

// Property keys of the results.
const (
	// PropUser, PropGroups (comma-separated), PropOperation and
	// PropRequestUID describe a denied request.
	PropUser       = "user"
	PropGroups     = "groups"
	PropOperation  = "operation"
	PropRequestUID = "requestUID"
	// PropTime is the result's time in RFC 3339, for people and kubectl.
	PropTime = "time"
	// PropPolicyRevision is the policy revision that decided.
	PropPolicyRevision = "policyRevision"
	// PropTeam, PropEnvironment and PropRequestedBy describe an audited
	// namespace.
	PropTeam        = "team"
	PropEnvironment = "environment"
	PropRequestedBy = "requestedBy"
	// PropClientCertificate says whether the caller of the webhook
	// presented a client certificate that nsprov verified against
	// --client-ca-file (ClientCertificateVerified) or not
	// (ClientCertificateUnverified: client verification is off, so the
	// request may not come from the API server).
	PropClientCertificate = "clientCertificate"
)

// Values of PropClientCertificate.
const (
	ClientCertificateVerified   = "verified"
	ClientCertificateUnverified = "unverified"
)

// Bounds of the strings a result stores, so that a report of ReportSize
// results stays small.
const (
	maxMessage = 1024
	maxGroups  = 512
)

// Scheme has the types the audit clients read and write: core and
// OpenReports.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := reportsv1alpha1.Install(s); err != nil {
		panic(err)
	}
	return s
}()

// newReport is an empty ClusterReport of nsprov's.
func newReport(name string, size int) *reportsv1alpha1.ClusterReport {
	return &reportsv1alpha1.ClusterReport{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{contract.ManagedByLabel: contract.ManagedBy}},
		Source:     Source,
		Configuration: &reportsv1alpha1.ReportConfiguration{Limits: reportsv1alpha1.Limits{
			MaxResults: size, StatusFilter: []reportsv1alpha1.StatusFilter{"fail"},
		}},
	}
}

func timestamp(t time.Time) metav1.Timestamp {
	return metav1.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func resultTime(r *reportsv1alpha1.ReportResult) time.Time {
	return time.Unix(r.Timestamp.Seconds, int64(r.Timestamp.Nanos))
}

// namespaceRef is the subject of a result: a Namespace, by name (and UID
// when it exists).
func namespaceRef(name string, uid string) corev1.ObjectReference {
	return corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: name, UID: types.UID(uid)}
}

// denialResult is the report result of one violated rule of a denied request.
func denialResult(d *denial) reportsv1alpha1.ReportResult {
	return reportsv1alpha1.ReportResult{
		Source:      Source,
		Policy:      d.Rule,
		Rule:        d.Rule,
		Category:    CategoryAdmission,
		Timestamp:   timestamp(d.Time),
		Result:      "fail",
		Subjects:    []corev1.ObjectReference{namespaceRef(d.Namespace, "")},
		Description: truncate(d.Message, maxMessage),
		Properties: map[string]string{
			PropUser:              d.Username,
			PropGroups:            truncate(strings.Join(d.Groups, ","), maxGroups),
			PropOperation:         d.Operation,
			PropRequestUID:        d.UID,
			PropTime:              d.Time.UTC().Format(time.RFC3339Nano),
			PropPolicyRevision:    d.Revision,
			PropClientCertificate: clientCertificate(d.ClientVerified),
		},
	}
}

// clientCertificate is the PropClientCertificate of a denial.
func clientCertificate(verified bool) string {
	if verified {
		return ClientCertificateVerified
	}
	return ClientCertificateUnverified
}

// resultKey identifies a denial result: request UID and rule.
func resultKey(r *reportsv1alpha1.ReportResult) string {
	return r.Properties[PropRequestUID] + "/" + r.Rule
}

// merged is the outcome of merging a batch into a report's results.
type merged struct {
	results []reportsv1alpha1.ReportResult
	// added counts the batch's results that were not in the report yet.
	added int
	// trimmed counts every result trimmed to the bound; trimmedNew those
	// among them that came from the batch.
	trimmed, trimmedNew int
}

// mergeDenials adds the batch's results to existing ones, skipping any whose
// request UID and rule are already there (a retried write), orders them by
// time (oldest first) and keeps the newest limit results.
func mergeDenials(existing []reportsv1alpha1.ReportResult, batch []denial, limit int) merged {
	seen := make(map[string]bool, len(existing)+len(batch))
	all := make([]reportsv1alpha1.ReportResult, 0, len(existing)+len(batch))
	for i := range existing {
		seen[resultKey(&existing[i])] = true
		all = append(all, existing[i])
	}
	isNew := map[string]bool{}
	m := merged{}
	for i := range batch {
		k := batch[i].key()
		if seen[k] {
			continue
		}
		seen[k] = true
		isNew[k] = true
		all = append(all, denialResult(&batch[i]))
		m.added++
	}
	sort.SliceStable(all, func(i, j int) bool {
		ti, tj := resultTime(&all[i]), resultTime(&all[j])
		if !ti.Equal(tj) {
			return ti.Before(tj)
		}
		return resultKey(&all[i]) < resultKey(&all[j])
	})
	if len(all) > limit {
		m.trimmed = len(all) - limit
		for i := range m.trimmed {
			if isNew[resultKey(&all[i])] {
				m.trimmedNew++
			}
		}
		all = all[m.trimmed:]
	}
	m.results = all
	return m
}

// summarize counts the results by their result.
func summarize(results []reportsv1alpha1.ReportResult) reportsv1alpha1.ReportSummary {
	var s reportsv1alpha1.ReportSummary
	for i := range results {
		switch results[i].Result {
		case "pass":
			s.Pass++
		case "fail":
			s.Fail++
		case "warn":
			s.Warn++
		case "error":
			s.Error++
		case "skip":
			s.Skip++
		}
	}
	return s
}

// errNoCRD says the OpenReports ClusterReport kind is not served.
var errNoCRD = errors.New("the OpenReports ClusterReport kind (clusterreports.openreports.io/v1alpha1) is not served")

// isNoCRD tells whether err means that ClusterReports are not served: no
// REST mapping for the kind, or a 404 for the resource itself.
func isNoCRD(err error, creating bool) bool {
	if errors.Is(err, errNoCRD) || meta.IsNoMatchError(err) {
		return true
	}
	return creating && apierrors.IsNotFound(err)
}

// isTooLarge tells whether the API server or etcd refused an object for its
// size.
func isTooLarge(err error) bool {
	if apierrors.IsRequestEntityTooLargeError(err) {
		return true
	}
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Code == http.StatusRequestEntityTooLarge {
		return true
	}
	return err != nil && strings.Contains(err.Error(), "too large")
}

// crdNotice makes the "OpenReports is not installed" message appear once per
// API server and process, whichever of the writer and the auditor meets it
// first, and the "it is back" message once when it is installed later.
type crdNotice struct {
	missing atomic.Bool
	mu      sync.Mutex
}

var crdNotices sync.Map // API server host -> *crdNotice

func noticeFor(cfg *rest.Config) *crdNotice {
	n, _ := crdNotices.LoadOrStore(cfg.Host, &crdNotice{})
	return n.(*crdNotice)
}

// CRDMissingMessage starts the log line that says the OpenReports CRDs are
// not installed.
const CRDMissingMessage = "OpenReports is not installed"

func (n *crdNotice) absent(log logr.Logger) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.missing.Swap(true) {
		return
	}
	log.Info(CRDMissingMessage+": the ClusterReport kind (clusterreports.openreports.io, v1alpha1) is not served, so denied requests are not kept in ClusterReport "+
		DenialsReportName+" and the namespace audit is not published in "+NamespaceAuditReportName+
		"; the decision log, the metrics and the NamespaceRequestDenied Events go on. Install the OpenReports CRDs (github.com/openreports/reports-api, config/crd) and nsprov starts writing the reports by itself",
		"crd", "clusterreports.openreports.io")
}

func (n *crdNotice) present(log logr.Logger) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.missing.Swap(false) {
		log.Info("OpenReports is installed now; nsprov writes its ClusterReports", "crd", "clusterreports.openreports.io")
	}
}
