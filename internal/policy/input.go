package policy

import (
	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
)

// Request is the part of an AdmissionRequest for a Namespace that the policy
// sees, as input.request. It follows the OPA Kubernetes admission convention.
type Request struct {
	// UID of the admission request.
	UID string
	// Operation is CREATE or UPDATE.
	Operation string
	// Username and Groups of the authenticated requester.
	Username string
	Groups   []string
	// DryRun is true for a dry-run request.
	DryRun bool
	// Object is the Namespace as it would be stored.
	Object *corev1.Namespace
	// OldObject is the stored Namespace on UPDATE, nil on CREATE.
	OldObject *corev1.Namespace
}

var (
	keyRequest           = ast.StringTerm("request")
	keyUID               = ast.StringTerm("uid")
	keyKind              = ast.StringTerm("kind")
	keyOperation         = ast.StringTerm("operation")
	keyUserInfo          = ast.StringTerm("userInfo")
	keyUsername          = ast.StringTerm("username")
	keyGroups            = ast.StringTerm("groups")
	keyDryRun            = ast.StringTerm("dryRun")
	keyObject            = ast.StringTerm("object")
	keyOldObject         = ast.StringTerm("oldObject")
	keyName              = ast.StringTerm("name")
	keyAPIVersion        = ast.StringTerm("apiVersion")
	keyMetadata          = ast.StringTerm("metadata")
	keyLabels            = ast.StringTerm("labels")
	keyAnnotations       = ast.StringTerm("annotations")
	keyStatus            = ast.StringTerm("status")
	keyPhase             = ast.StringTerm("phase")
	keyGroup             = ast.StringTerm("group")
	keyVersion           = ast.StringTerm("version")
	keyDeletionTimestamp = ast.StringTerm("deletionTimestamp")
	namespaceKind        = ast.ObjectTerm(
		ast.Item(keyGroup, ast.StringTerm("")),
		ast.Item(keyVersion, ast.StringTerm("v1")),
		ast.Item(keyKind, ast.StringTerm("Namespace")),
	)
	nullTerm = ast.NullTerm()
)

// knownStrings holds one shared term for each string that appears in most
// inputs: nsprov's annotation and label keys, the values of its catalogues,
// operations, the common Kubernetes labels and phases. Reusing them saves two
// allocations per string on every request; any other string gets a term of
// its own. Terms are never modified by the evaluator, so sharing them is safe.
var knownStrings = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		"nsprov.io/team", "nsprov.io/environment", "nsprov.io/tier", "nsprov.io/network-policy",
		"nsprov.io/features", "nsprov.io/reprovision", "nsprov.io/requested-by", "nsprov.io/workflow",
		"development", "staging", "production", "micro", "small", "medium", "large",
		"isolated", "team", "open", "istio", "monitoring-enhanced",
		"CREATE", "UPDATE", "Active", "Terminating", "", "v1", "Namespace",
		"system:authenticated", "kubernetes.io/metadata.name",
	} {
		m[s] = ast.StringTerm(s)
	}
	return m
}()

// statusTerms holds the status of a Namespace in each phase.
var statusTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, phase := range []string{"", "Active", "Terminating"} {
		m[phase] = ast.ObjectTerm(ast.Item(keyPhase, ast.StringTerm(phase)))
	}
	return m
}()

var (
	apiVersionItem = ast.Item(keyAPIVersion, ast.StringTerm("v1"))
	kindItem       = ast.Item(keyKind, ast.StringTerm("Namespace"))
)

// Value builds input for the policy directly as an OPA value, without a JSON
// round trip: input.request holds uid, kind, operation, userInfo, dryRun,
// object and oldObject. A Namespace carries apiVersion, kind, metadata (name,
// uid, labels, annotations, deletionTimestamp when set) and status.phase.
func (r *Request) Value() ast.Value {
	var a termArena
	var groupBuf [8]*ast.Term
	groups := groupBuf[:0]
	for _, g := range r.Groups {
		groups = append(groups, a.str(g))
	}
	old := nullTerm
	if r.OldObject != nil {
		old = namespaceTerm(&a, r.OldObject, a.str(r.OldObject.Name))
	}
	nameTerm := a.str(r.Object.Name)
	req := ast.NewObject(
		ast.Item(keyUID, a.str(r.UID)),
		ast.Item(keyKind, namespaceKind),
		ast.Item(keyOperation, a.str(r.Operation)),
		ast.Item(keyUserInfo, a.term(ast.NewObject(
			ast.Item(keyUsername, a.str(r.Username)),
			ast.Item(keyGroups, a.term(ast.NewArray(groups...))),
		))),
		ast.Item(keyDryRun, ast.InternedTerm(r.DryRun)),
		ast.Item(keyName, nameTerm),
		ast.Item(keyObject, namespaceTerm(&a, r.Object, nameTerm)),
		ast.Item(keyOldObject, old),
	)
	return ast.NewObject(ast.Item(keyRequest, a.term(req)))
}

func namespaceTerm(a *termArena, ns *corev1.Namespace, name *ast.Term) *ast.Term {
	var buf [5][2]*ast.Term
	meta := append(buf[:0],
		ast.Item(keyName, name),
		ast.Item(keyLabels, stringMapTerm(a, ns.Labels)),
		ast.Item(keyAnnotations, stringMapTerm(a, ns.Annotations)),
	)
	if ns.UID != "" {
		meta = append(meta, ast.Item(keyUID, a.str(string(ns.UID))))
	}
	if ns.DeletionTimestamp != nil {
		meta = append(meta, ast.Item(keyDeletionTimestamp, a.str(ns.DeletionTimestamp.UTC().Format("2006-01-02T15:04:05Z"))))
	}
	status, ok := statusTerms[string(ns.Status.Phase)]
	if !ok {
		status = a.term(ast.NewObject(ast.Item(keyPhase, a.str(string(ns.Status.Phase)))))
	}
	return a.term(ast.NewObject(
		apiVersionItem,
		kindItem,
		ast.Item(keyMetadata, a.term(ast.NewObject(meta...))),
		ast.Item(keyStatus, status),
	))
}

func stringMapTerm(a *termArena, m map[string]string) *ast.Term {
	var buf [16][2]*ast.Term
	items := buf[:0]
	for k, v := range m {
		items = append(items, ast.Item(a.str(k), a.str(v)))
	}
	return a.term(ast.NewObject(items...))
}
