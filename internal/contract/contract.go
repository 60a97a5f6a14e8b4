package contract

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Prefix starts every annotation and label key nsprov owns. A namespace that
// carries one goes through the webhooks.
const Prefix = "nsprov.io/"

// Request annotations, written by the requester on a Namespace.
const (
	// TeamAnnotation names the team that owns the namespace (required).
	TeamAnnotation = "nsprov.io/team"
	// EnvironmentAnnotation is development, staging or production (required).
	EnvironmentAnnotation = "nsprov.io/environment"
	// TierAnnotation is micro, small, medium or large (default per environment).
	TierAnnotation = "nsprov.io/tier"
	// NetworkPolicyAnnotation is isolated, team or open (default isolated).
	NetworkPolicyAnnotation = "nsprov.io/network-policy"
	// FeaturesAnnotation lists the requested features, comma-separated.
	FeaturesAnnotation = "nsprov.io/features"
	// ReprovisionAnnotation set to a new value runs the same plan again.
	ReprovisionAnnotation = "nsprov.io/reprovision"
	// CancelAnnotation, set to any value, stops the namespace's running or
	// queued provisioning: its Workflow is shut down, the condition turns
	// False with reason Cancelled, and nsprov removes the annotation. The
	// same request is not run again; a new one (a changed request,
	// nsprov.io/reprovision) is.
	CancelAnnotation = "nsprov.io/cancel"
)

// RequestAnnotations are the annotations that make a namespace a requested
// one: a namespace with any of them is provisioned and audited.
func RequestAnnotations() []string { return append([]string(nil), requestAnnotations[:]...) }

var requestAnnotations = [...]string{TeamAnnotation, EnvironmentAnnotation, TierAnnotation, NetworkPolicyAnnotation, FeaturesAnnotation}

// IsRequested reports whether ns carries a request annotation.
func IsRequested(ns *corev1.Namespace) bool {
	for _, k := range requestAnnotations {
		if _, ok := ns.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// Metadata nsprov writes itself and never trusts from a requester.
const (
	// RequestedByAnnotation is the authenticated user who requested the namespace.
	RequestedByAnnotation = "nsprov.io/requested-by"
	// WorkflowAnnotation on a Namespace names the Workflow that provisions
	// it: <argo-namespace>/<workflow-name>.
	WorkflowAnnotation = "nsprov.io/workflow"
	// ProvisionedPlanAnnotation on a Namespace records what its current
	// Workflow provisions: <plan hash>.<template hash>[.<reprovision hash>].
	// When the plan, the WorkflowTemplate's content and nsprov.io/reprovision
	// still give this value, the namespace is not provisioned again, even
	// once the Workflow is gone (Argo's TTL).
	ProvisionedPlanAnnotation = "nsprov.io/provisioned-plan"
	// ProvisioningAnnotation on a Namespace is the state of the provisioning
	// of its current request: ProvisioningPending, set by the mutating
	// webhook when a request is created or changed (and by nsprov when it
	// starts a run), then ProvisioningSucceeded, ProvisioningFailed or
	// ProvisioningCancelled, set by nsprov for the request as it now is. So
	// `kubectl wait --for=jsonpath='{.metadata.annotations.nsprov\.io/provisioning}'=Succeeded`
	// right after a change waits for that change. A requester cannot set it
	// to anything but Pending.
	ProvisioningAnnotation = "nsprov.io/provisioning"
	// TeamLabel, EnvironmentLabel and TierLabel mirror the request
	// annotations of the same name, so selectors can use them.
	TeamLabel        = TeamAnnotation
	EnvironmentLabel = EnvironmentAnnotation
	TierLabel        = TierAnnotation
	// NamespaceLabel on a Workflow names the Namespace it provisions.
	NamespaceLabel = "nsprov.io/namespace"
	// PlanHashAnnotation on a Workflow is the hash of its arguments; the
	// Workflow's name ends with it.
	PlanHashAnnotation = "nsprov.io/plan-hash"
	// RoleBindingLabel on a RoleBinding nsprov applies holds its name, so a
	// label selector can find the ones the plan no longer names.
	RoleBindingLabel = "nsprov.io/role-binding"
	// ManagedByLabel with the value ManagedBy marks what nsprov creates:
	// Workflows, the objects they apply, and nsprov's ClusterReports.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	// ManagedBy is the value of ManagedByLabel on what nsprov creates.
	ManagedBy = "nsprov"
)

// Values of ProvisioningAnnotation.
const (
	ProvisioningPending   = "Pending"
	ProvisioningSucceeded = "Succeeded"
	ProvisioningFailed    = "Failed"
	ProvisioningCancelled = "Cancelled"
)

// Annotations of nsprov's namespace audit ClusterReport (nsprov-namespace-audit).
const (
	// ReportPolicyRevisionAnnotation is the policy revision audited.
	ReportPolicyRevisionAnnotation = "nsprov.io/policy-revision"
	// ReportAuditedNamespacesAnnotation is how many requested namespaces were audited.
	ReportAuditedNamespacesAnnotation = "nsprov.io/audited-namespaces"
	// ReportLastAuditAnnotation is when the audit ran (RFC 3339).
	ReportLastAuditAnnotation = "nsprov.io/last-audit"
	// ReportOmittedViolationsAnnotation counts the violations beyond the
	// report's size; absent when none were left out.
	ReportOmittedViolationsAnnotation = "nsprov.io/omitted-violations"
)

// MirroredLabels are the labels nsprov mirrors from the request annotations
// of the same keys.
func MirroredLabels() []string {
	return []string{TeamLabel, EnvironmentLabel, TierLabel}
}

// KnownAnnotations are every Namespace annotation nsprov reads or writes;
// the policy warns about any other nsprov.io/ annotation.
func KnownAnnotations() []string {
	return []string{
		TeamAnnotation, EnvironmentAnnotation, TierAnnotation, NetworkPolicyAnnotation, FeaturesAnnotation,
		ReprovisionAnnotation, RequestedByAnnotation, WorkflowAnnotation,
		ProvisionedPlanAnnotation, ProvisioningAnnotation, CancelAnnotation,
	}
}

// The Provisioned condition on Namespace.status.conditions, so that
// `kubectl wait --for=condition=Provisioned ns/NAME` works.
const (
	// ConditionProvisioned is the Namespace condition nsprov reports.
	ConditionProvisioned corev1.NamespaceConditionType = "Provisioned"

	// ReasonPending: the Workflow exists and has not started (Unknown).
	ReasonPending = "Pending"
	// ReasonRunning: the Workflow runs (Unknown).
	ReasonRunning = "Running"
	// ReasonSucceeded: the Workflow succeeded (True).
	ReasonSucceeded = "Succeeded"
	// ReasonFailed: the Workflow failed (False).
	ReasonFailed = "Failed"
	// ReasonTemplateNotFound: the WorkflowTemplate is not installed (False).
	ReasonTemplateNotFound = "TemplateNotFound"
	// ReasonPolicyViolation: the namespace breaks the current policy, or
	// the policy's plan cannot drive the Workflow (False).
	ReasonPolicyViolation = "PolicyViolation"
	// ReasonQueued: the Workflow waits for its turn, as nsprov bounds how
	// many Workflows run at once and how fast they start (Unknown).
	ReasonQueued = "Queued"
	// ReasonCancelled: nsprov.io/cancel stopped the provisioning (False).
	ReasonCancelled = "Cancelled"
)

// Reasons are the reasons of the Provisioned condition; Events use them too.
func Reasons() []string {
	return []string{ReasonPending, ReasonRunning, ReasonSucceeded, ReasonFailed, ReasonTemplateNotFound, ReasonPolicyViolation, ReasonQueued, ReasonCancelled}
}

// Identity is a user the policy is evaluated as.
type Identity struct {
	// Username is the user's name as the API server authenticates it.
	Username string
	// Groups are the groups the API server gives the user.
	Groups []string
}

// DefaultUsername is nsprov's own identity: the service account the chart
// runs it as (serve's --identity), listed in the policy's manager_users.
const DefaultUsername = "system:serviceaccount:nsprov-system:nsprov"

// As is the identity nsprov evaluates the policy as when it acts on its own
// (the provisioning plan, the background audit): username with the groups
// the API server gives it. A service account user
// (system:serviceaccount:NS:NAME) is in system:serviceaccounts,
// system:serviceaccounts:NS and system:authenticated; any other user in
// system:authenticated only.
func As(username string) Identity {
	return Identity{Username: username, Groups: ServiceAccountGroups(username)}
}

// ServiceAccountGroups are the groups the API server gives username: those
// of a service account for system:serviceaccount:NS:NAME, else
// system:authenticated only.
func ServiceAccountGroups(username string) []string {
	parts := strings.Split(username, ":")
	if len(parts) == 4 && parts[0] == "system" && parts[1] == "serviceaccount" {
		return []string{"system:serviceaccounts", "system:serviceaccounts:" + parts[2], "system:authenticated"}
	}
	return []string{"system:authenticated"}
}
