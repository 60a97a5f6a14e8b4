# METADATA
# title: nsprov mutation
# description: >-
#   Defaults and normalisation of a requested Namespace. The result lists the
#   annotations and labels to set; a null value removes the key. The webhook
#   turns it into a JSON patch. Namespaces without request annotations are
#   left alone.
package nsprov.mutation

import data.nsprov.lib
import rego.v1

# METADATA
# title: Mutation result
# description: '{"annotations": {key: value or null}, "labels": {key: value or null}}'
result := {"annotations": annotations, "labels": labels} if {
	lib.is_requested
} else := {"annotations": {}, "labels": released_labels}

# The rules below build whole objects rather than one key per rule: a complete
# rule is evaluated once per query, which keeps the admission path short.

# An admin who removes every request annotation releases the namespace: the
# mirrored labels go with them, so selectors stop treating it as a tenant.
released_labels := {key: null |
	lib.was_requested
	some key in lib.mirrored_label_keys
	_ = lib.labels[key]
}

annotations := object.union_n([
	tier_annotation,
	features_annotation,
	{"nsprov.io/network-policy": lib.network_policy, "nsprov.io/requested-by": requested_by},
])

tier_annotation := {"nsprov.io/tier": lib.tier} if {
	lib.tier
} else := {}

features_annotation := {"nsprov.io/features": concat(",", lib.features)} if {
	count(lib.features) > 0
} else := {"nsprov.io/features": null} if {
	_ = lib.annotations["nsprov.io/features"]
} else := {}

# The requester is the authenticated user of the request that first asked for
# the namespace; later updates keep it.
requested_by := old if {
	input.request.operation == "UPDATE"
	old := lib.old_annotations["nsprov.io/requested-by"]
} else := lib.username

# Labels mirror the annotations so selectors can use them. A value that is not
# valid is not mirrored (it would fail the API server's label validation before
# the validating webhook can explain it); a mirrored label whose annotation is
# gone is removed.
labels := object.union(stale_labels, mirrored)

stale_labels := {key: null |
	some key, _ in lib.labels
	key in lib.mirrored_label_keys
	not mirrored[key]
}

mirrored := object.union_n([mirrored_team, mirrored_environment, mirrored_tier])

mirrored_team := {"nsprov.io/team": lib.team} if {
	lib.valid_team(lib.team)
} else := {}

mirrored_environment := {"nsprov.io/environment": lib.environment} if {
	data.config.environments[lib.environment]
} else := {}

mirrored_tier := {"nsprov.io/tier": lib.tier} if {
	data.config.tiers[lib.tier]
} else := {}
