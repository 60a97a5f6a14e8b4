# METADATA
# title: nsprov request helpers
# description: >-
#   Reads the AdmissionRequest in input.request and derives the effective
#   request values (team, environment, tier, network policy, features) of a
#   Namespace. Every other nsprov package builds on these helpers.
package nsprov.lib

import rego.v1

prefix := "nsprov.io/"

# Request annotations, written by the requester.
team_key := "nsprov.io/team"

environment_key := "nsprov.io/environment"

tier_key := "nsprov.io/tier"

network_policy_key := "nsprov.io/network-policy"

features_key := "nsprov.io/features"

reprovision_key := "nsprov.io/reprovision"

request_keys := {team_key, environment_key, tier_key, network_policy_key, features_key}

# Metadata nsprov writes itself.
requested_by_key := "nsprov.io/requested-by"

workflow_key := "nsprov.io/workflow"

mirrored_label_keys := {team_key, environment_key, tier_key}

known_annotation_keys := request_keys | {reprovision_key, requested_by_key, workflow_key}

request := input.request

operation := request.operation

obj := request.object

old_obj := object.get(request, "oldObject", null)

username := object.get(request, ["userInfo", "username"], "")

groups := object.get(request, ["userInfo", "groups"], [])

name := object.get(obj, ["metadata", "name"], "")

annotations_of(o) := object.get(o, ["metadata", "annotations"], {}) if o != null

annotations_of(null) := {}

labels_of(o) := object.get(o, ["metadata", "labels"], {}) if o != null

labels_of(null) := {}

annotations := annotations_of(obj)

labels := labels_of(obj)

old_annotations := annotations_of(old_obj)

old_labels := labels_of(old_obj)

# requested(o) holds when o carries at least one request annotation.
requested(o) if {
	some key in request_keys
	_ = annotations_of(o)[key]
}

is_requested if requested(obj)

was_requested if requested(old_obj)

access := data.config.access

is_admin if username in access.admin_users

is_admin if {
	some g in groups
	g in access.admin_groups
}

is_exempt if username in access.exempt_users

is_exempt if {
	some g in groups
	g in access.exempt_groups
}

is_manager if username in access.manager_users

is_manager if {
	some g in groups
	g in access.manager_groups
}

team_group(team) := replace(access.team_group, "{team}", team)

dns_label_pattern := `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`

valid_team(team) if {
	is_string(team)
	count(team) <= 40
	regex.match(dns_label_pattern, team)
}

# Effective values of an object's request, with the defaults applied. A value
# is undefined when the request does not say it and has no default.
team_of(o) := annotations_of(o)[team_key]

environment_of(o) := annotations_of(o)[environment_key]

tier_of(o) := annotations_of(o)[tier_key]

tier_of(o) := data.config.environments[environment_of(o)].default_tier if not annotations_of(o)[tier_key]

network_policy_of(o) := annotations_of(o)[network_policy_key]

network_policy_of(o) := data.config.network_policies.default if not annotations_of(o)[network_policy_key]

# The requested features, trimmed, lower-cased, de-duplicated and sorted.
features_of(o) := sort({f |
	some part in split(annotations_of(o)[features_key], ",")
	f := lower(trim_space(part))
	f != ""
})

features_of(o) := [] if not annotations_of(o)[features_key]

team := team_of(obj)

environment := environment_of(obj)

tier := tier_of(obj)

network_policy := network_policy_of(obj)

features := features_of(obj)

environment_config := data.config.environments[environment]

tier_config := data.config.tiers[tier]
