package admission

import (
	"maps"

	"github.com/nsprov/nsprov/internal/policy"
)

// unchecked reports whether nsprov lets an UPDATE through without evaluating
// the policy: the namespace is being deleted (deletionTimestamp set), or the
// update changes neither its labels nor its annotations, the only metadata the
// policy reads (a finalizer patch, say: the garbage collector's in a
// foreground deletion). The chart's webhook configurations never send such
// updates (their matchConditions); the handlers let them through as well, so
// that no policy edit freezes a namespace even where those conditions are
// missing.
func unchecked(in *policy.Request) bool {
	if in.Operation != "UPDATE" || in.Object == nil || in.OldObject == nil {
		return false
	}
	if in.Object.DeletionTimestamp != nil || in.OldObject.DeletionTimestamp != nil {
		return true
	}
	return maps.Equal(in.Object.Labels, in.OldObject.Labels) && maps.Equal(in.Object.Annotations, in.OldObject.Annotations)
}
