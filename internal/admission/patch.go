package admission

import (
	"context"
	"maps"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/policy"
)

// patch turns a mutation of ns into RFC 6902 operations and applies them to
// ns, which the caller owns. Keys that already hold the wanted value yield no
// operation.
func patch(m *policy.Mutation, ns *corev1.Namespace) []jsonpatch.JsonPatchOperation {
	ops := make([]jsonpatch.JsonPatchOperation, 0, len(m.Annotations)+len(m.Labels))
	ops = patchMap(ops, "/metadata/annotations", &ns.Annotations, m.Annotations)
	ops = patchMap(ops, "/metadata/labels", &ns.Labels, m.Labels)
	return ops
}

func patchMap(ops []jsonpatch.JsonPatchOperation, path string, have *map[string]string, want map[string]*string) []jsonpatch.JsonPatchOperation {
	if *have == nil {
		// No map yet: one operation adds it with every wanted key.
		added := map[string]string{}
		for k, v := range want {
			if v != nil {
				added[k] = *v
			}
		}
		if len(added) == 0 {
			return ops
		}
		*have = added
		return append(ops, jsonpatch.NewOperation("add", path, maps.Clone(added)))
	}
	var buf [16]string
	keys := buf[:0]
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := want[k]
		cur, exists := (*have)[k]
		switch {
		case v == nil && exists:
			ops = append(ops, jsonpatch.NewOperation("remove", pointer(path, k), nil))
			delete(*have, k)
		case v == nil, exists && cur == *v:
		default:
			op := "add"
			if exists {
				op = "replace"
			}
			(*have)[k] = *v
			ops = append(ops, jsonpatch.NewOperation(op, pointer(path, k), *v))
		}
	}
	return ops
}

// pointer is the JSON pointer of key in the map at path: key escaped
// (RFC 6901: "~" as "~0", "/" as "~1") after path and "/", built in one
// allocation.
func pointer(path, key string) string {
	n := len(path) + 1 + len(key) + strings.Count(key, "~") + strings.Count(key, "/")
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(path)
	sb.WriteByte('/')
	for i := 0; i < len(key); i++ {
		switch c := key[i]; c {
		case '~':
			sb.WriteString("~0")
		case '/':
			sb.WriteString("~1")
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// Decision is a full offline decision: mutation, then validation of the
// mutated object, then the plan, as the webhooks and the controller would
// compute them.
type Decision struct {
	Allowed    bool                           `json:"allowed"`
	Violations []policy.Violation             `json:"violations"`
	Warnings   []string                       `json:"warnings"`
	Patch      []jsonpatch.JsonPatchOperation `json:"patch"`
	Object     *corev1.Namespace              `json:"object"`
	Plan       map[string]any                 `json:"plan"`
}

// Decide mutates req.Object (a copy is made) with b, validates the result
// and, when allowed, evaluates the plan.
func Decide(ctx context.Context, b *policy.Bundle, req *policy.Request) (*Decision, error) {
	r := *req
	r.Object = req.Object.DeepCopy()
	m, err := b.Mutate(ctx, &r)
	if err != nil {
		return nil, err
	}
	d := &Decision{Patch: patch(m, r.Object), Object: r.Object}
	v, err := b.Validate(ctx, &r)
	if err != nil {
		return nil, err
	}
	d.Allowed, d.Violations, d.Warnings = v.Allowed(), v.Violations, v.Warnings
	if d.Allowed {
		if d.Plan, err = b.Plan(ctx, &r); err != nil {
			return nil, err
		}
	}
	if d.Violations == nil {
		d.Violations = []policy.Violation{}
	}
	if d.Warnings == nil {
		d.Warnings = []string{}
	}
	if d.Patch == nil {
		d.Patch = []jsonpatch.JsonPatchOperation{}
	}
	return d, nil
}
