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

// Value builds input for the policy directly as an OPA value, without a JSON
// round trip: input.request holds uid, kind, operation, userInfo, dryRun,
// object and oldObject. A Namespace carries apiVersion, kind, metadata (name,
// uid, labels, annotations, deletionTimestamp when set) and status.phase.
func (r *Request) Value() ast.Value {
	groups := make([]*ast.Term, len(r.Groups))
	for i, g := range r.Groups {
		groups[i] = ast.StringTerm(g)
	}
	old := nullTerm
	if r.OldObject != nil {
		old = namespaceTerm(r.OldObject)
	}
	req := ast.NewObject(
		ast.Item(keyUID, ast.StringTerm(r.UID)),
		ast.Item(keyKind, namespaceKind),
		ast.Item(keyOperation, ast.StringTerm(r.Operation)),
		ast.Item(keyUserInfo, ast.ObjectTerm(
			ast.Item(keyUsername, ast.StringTerm(r.Username)),
			ast.Item(keyGroups, ast.ArrayTerm(groups...)),
		)),
		ast.Item(keyDryRun, ast.BooleanTerm(r.DryRun)),
		ast.Item(keyName, ast.StringTerm(r.Object.Name)),
		ast.Item(keyObject, namespaceTerm(r.Object)),
		ast.Item(keyOldObject, old),
	)
	return ast.NewObject(ast.Item(keyRequest, ast.NewTerm(req)))
}

func namespaceTerm(ns *corev1.Namespace) *ast.Term {
	meta := [][2]*ast.Term{
		ast.Item(keyName, ast.StringTerm(ns.Name)),
		ast.Item(keyLabels, stringMapTerm(ns.Labels)),
		ast.Item(keyAnnotations, stringMapTerm(ns.Annotations)),
	}
	if ns.UID != "" {
		meta = append(meta, ast.Item(keyUID, ast.StringTerm(string(ns.UID))))
	}
	if ns.DeletionTimestamp != nil {
		meta = append(meta, ast.Item(keyDeletionTimestamp, ast.StringTerm(ns.DeletionTimestamp.UTC().Format("2006-01-02T15:04:05Z"))))
	}
	return ast.ObjectTerm(
		ast.Item(keyAPIVersion, ast.StringTerm("v1")),
		ast.Item(keyKind, ast.StringTerm("Namespace")),
		ast.Item(keyMetadata, ast.ObjectTerm(meta...)),
		ast.Item(keyStatus, ast.ObjectTerm(ast.Item(keyPhase, ast.StringTerm(string(ns.Status.Phase))))),
	)
}

func stringMapTerm(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	return ast.ObjectTerm(items...)
}
