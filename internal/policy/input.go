package policy

import (
	"cmp"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/policy/compiled"
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

// Bounds of the known strings of a bundle.
const (
	maxKnownStrings      = 4096
	maxKnownStringLength = 256
)

// kubernetesStrings are strings of most inputs that come from Kubernetes,
// not from the policy: operations, phases, the fields the input builder
// writes, the group every authenticated user has and the name label.
var kubernetesStrings = []string{
	"CREATE", "UPDATE", "Active", "Terminating", "", "v1", "Namespace",
	"system:authenticated", "kubernetes.io/metadata.name",
}

// knownStrings returns one shared term for each string that appears in most
// inputs: the Kubernetes strings above and every string the bundle itself
// spells, in its data (keys and values: the catalogues) and as literals of
// its modules (annotation and label keys, allowed values). Reusing them
// saves two allocations per string on every request; any other string gets
// a term of its own. Terms are never modified by the evaluators, so sharing
// them is safe. Long strings (messages) are left out, and the set is bounded.
func knownStrings(data map[string]any, modules map[string]*ast.Module) map[string]*ast.Term {
	seen := map[string]struct{}{}
	add := func(s string) {
		if len(s) <= maxKnownStringLength {
			seen[s] = struct{}{}
		}
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			add(v)
		case map[string]any:
			for k, x := range v {
				add(k)
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(data)
	for _, m := range modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if s, ok := t.Value.(ast.String); ok {
				add(string(s))
			}
			return false
		})
	}
	all := make([]string, 0, len(seen))
	for s := range seen {
		all = append(all, s)
	}
	// Kubernetes' strings first, then the bundle's, shortest first: when
	// there are too many, the catalogue values and keys stay.
	slices.SortFunc(all, func(a, b string) int { return cmp.Or(cmp.Compare(len(a), len(b)), strings.Compare(a, b)) })
	all = append(slices.Clone(kubernetesStrings), all...)
	m := make(map[string]*ast.Term, min(len(all), maxKnownStrings))
	for _, s := range all {
		if len(m) == maxKnownStrings {
			break
		}
		if _, ok := m[s]; !ok {
			m[s] = ast.StringTerm(s)
		}
	}
	return m
}

// inputArena makes the terms of an input: known strings are shared, other
// terms come from an arena.
type inputArena struct {
	compiled.TermArena
	known map[string]*ast.Term
}

func (a *inputArena) term(v ast.Value) *ast.Term { return a.Term(v) }

// str returns the shared term of a known string, or a new one.
func (a *inputArena) str(s string) *ast.Term {
	if t, ok := a.known[s]; ok {
		return t
	}
	return a.Term(ast.String(s))
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

// input builds the policy input of a request with the bundle's known
// strings (see Request.value).
func (b *Bundle) input(r *Request) ast.Value { return r.value(b.strings) }

// value builds input for the policy directly as an OPA value, without a JSON
// round trip: input.request holds uid, kind, operation, userInfo, dryRun,
// object and oldObject. A Namespace carries apiVersion, kind, metadata (name,
// uid, labels, annotations, deletionTimestamp when set) and status.phase.
// Strings in known share their terms.
func (r *Request) value(known map[string]*ast.Term) ast.Value {
	a := inputArena{known: known}
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

func namespaceTerm(a *inputArena, ns *corev1.Namespace, name *ast.Term) *ast.Term {
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

func stringMapTerm(a *inputArena, m map[string]string) *ast.Term {
	var buf [16][2]*ast.Term
	items := buf[:0]
	for k, v := range m {
		items = append(items, ast.Item(a.str(k), a.str(v)))
	}
	return a.term(ast.NewObject(items...))
}
