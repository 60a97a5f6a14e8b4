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

// stringTerm returns the shared term of a known string, or a new term.
func stringTerm(s string) *ast.Term {
	if t, ok := knownStrings[s]; ok {
		return t
	}
	return ast.StringTerm(s)
}

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
	groups := make([]*ast.Term, len(r.Groups))
	for i, g := range r.Groups {
		groups[i] = stringTerm(g)
	}
	old := nullTerm
	if r.OldObject != nil {
		old = namespaceTerm(r.OldObject, stringTerm(r.OldObject.Name))
	}
	nameTerm := stringTerm(r.Object.Name)
	req := ast.NewObject(
		ast.Item(keyUID, ast.StringTerm(r.UID)),
		ast.Item(keyKind, namespaceKind),
		ast.Item(keyOperation, stringTerm(r.Operation)),
		ast.Item(keyUserInfo, ast.ObjectTerm(
			ast.Item(keyUsername, stringTerm(r.Username)),
			ast.Item(keyGroups, ast.ArrayTerm(groups...)),
		)),
		ast.Item(keyDryRun, ast.InternedTerm(r.DryRun)),
		ast.Item(keyName, nameTerm),
		ast.Item(keyObject, namespaceTerm(r.Object, nameTerm)),
		ast.Item(keyOldObject, old),
	)
	return ast.NewObject(ast.Item(keyRequest, ast.NewTerm(req)))
}

func namespaceTerm(ns *corev1.Namespace, name *ast.Term) *ast.Term {
	var buf [5][2]*ast.Term
	meta := append(buf[:0],
		ast.Item(keyName, name),
		ast.Item(keyLabels, stringMapTerm(ns.Labels)),
		ast.Item(keyAnnotations, stringMapTerm(ns.Annotations)),
	)
	if ns.UID != "" {
		meta = append(meta, ast.Item(keyUID, ast.StringTerm(string(ns.UID))))
	}
	if ns.DeletionTimestamp != nil {
		meta = append(meta, ast.Item(keyDeletionTimestamp, ast.StringTerm(ns.DeletionTimestamp.UTC().Format("2006-01-02T15:04:05Z"))))
	}
	status, ok := statusTerms[string(ns.Status.Phase)]
	if !ok {
		status = ast.ObjectTerm(ast.Item(keyPhase, ast.StringTerm(string(ns.Status.Phase))))
	}
	return ast.ObjectTerm(
		apiVersionItem,
		kindItem,
		ast.Item(keyMetadata, ast.ObjectTerm(meta...)),
		ast.Item(keyStatus, status),
	)
}

func stringMapTerm(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(stringTerm(k), stringTerm(v)))
	}
	return ast.ObjectTerm(items...)
}
