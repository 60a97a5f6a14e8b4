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
	provisioning_annotation,
	provisioned_plan_annotation,
])

# nsprov.io/provisioning says how the provisioning of the request as it now
# is goes. A new or changed request (its annotations or
# nsprov.io/reprovision) is Pending until nsprov's controller, which alone
# writes the other values, reports its Workflow's result; so a client waits
# for its own change with
# kubectl wait --for=jsonpath='{.metadata.annotations.nsprov\.io/provisioning}'=Succeeded.
# Anyone else's value is replaced by the stored one: a requester cannot fake
# a success.
provisioning_annotation := {"nsprov.io/provisioning": "Pending"} if {
	request_changed
} else := {"nsprov.io/provisioning": object.get(lib.old_annotations, "nsprov.io/provisioning", null)} if {
	not lib.is_manager
	changed_by_request("nsprov.io/provisioning")
} else := {}

# nsprov.io/provisioned-plan records what the controller provisioned; only
# nsprov writes it (a forged one would stop a re-provisioning).
provisioned_plan_annotation := {"nsprov.io/provisioned-plan": object.get(lib.old_annotations, "nsprov.io/provisioned-plan", null)} if {
	not lib.is_manager
	changed_by_request("nsprov.io/provisioned-plan")
} else := {}

changed_by_request(key) if object.get(lib.annotations, key, null) != object.get(lib.old_annotations, key, null)

request_changed if input.request.operation == "CREATE"

request_changed if {
	input.request.operation == "UPDATE"
	some key in request_change_keys
	changed_by_request(key)
}

request_change_keys := lib.request_keys | {lib.reprovision_key}

tier_annotation := {"nsprov.io/tier": lib.tier} if {
	lib.tier
} else := {}

features_annotation := {} if {
	lib.features_too_long
} else := {"nsprov.io/features": concat(",", lib.features)} if {
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
