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
result := {"annotations": annotations, "labels": labels} if lib.is_requested

result := {"annotations": {}, "labels": released_labels} if not lib.is_requested

# An admin who removes every request annotation releases the namespace: the
# mirrored labels go with them, so selectors stop treating it as a tenant.
released_labels := {key: null |
	lib.was_requested
	some key in lib.mirrored_label_keys
	_ = lib.labels[key]
}

annotations[lib.tier_key] := lib.tier

annotations[lib.network_policy_key] := lib.network_policy

annotations[lib.features_key] := concat(",", lib.features) if count(lib.features) > 0

annotations[lib.features_key] := null if {
	count(lib.features) == 0
	_ = lib.annotations[lib.features_key]
}

annotations[lib.requested_by_key] := requested_by

# The requester is the authenticated user of the request that first asked for
# the namespace; later updates keep it.
requested_by := lib.old_annotations[lib.requested_by_key] if lib.operation == "UPDATE"

requested_by := lib.username if {
	lib.operation == "UPDATE"
	not lib.old_annotations[lib.requested_by_key]
}

requested_by := lib.username if lib.operation == "CREATE"

# Labels mirror the annotations so selectors can use them. A value that is not
# valid is not mirrored (it would fail the API server's label validation before
# the validating webhook can explain it); a mirrored label whose annotation is
# gone is removed.
labels[key] := value if {
	some key in lib.mirrored_label_keys
	value := mirrored[key]
}

labels[key] := null if {
	some key in lib.mirrored_label_keys
	not mirrored[key]
	_ = lib.labels[key]
}

mirrored[lib.team_key] := lib.team if lib.valid_team(lib.team)

mirrored[lib.environment_key] := lib.environment if data.config.environments[lib.environment]

mirrored[lib.tier_key] := lib.tier if data.config.tiers[lib.tier]
