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

request_keys := {"nsprov.io/team", "nsprov.io/environment", "nsprov.io/tier", "nsprov.io/network-policy", "nsprov.io/features"}

# Metadata nsprov writes itself.
requested_by_key := "nsprov.io/requested-by"

workflow_key := "nsprov.io/workflow"

mirrored_label_keys := {"nsprov.io/team", "nsprov.io/environment", "nsprov.io/tier"}

known_annotation_keys := {
	"nsprov.io/team", "nsprov.io/environment", "nsprov.io/tier", "nsprov.io/network-policy", "nsprov.io/features",
	"nsprov.io/reprovision", "nsprov.io/requested-by", "nsprov.io/workflow",
	"nsprov.io/provisioned-plan", "nsprov.io/provisioning", "nsprov.io/cancel",
}

request := input.request

operation := input.request.operation

obj := input.request.object

old_obj := object.get(input.request, "oldObject", null)

username := object.get(input.request, ["userInfo", "username"], "")

groups := object.get(input.request, ["userInfo", "groups"], [])

name := object.get(input.request.object, ["metadata", "name"], "")

# The annotations and labels of an object, {} when it has none. The rules for
# the request's own object read input directly: they sit on the admission
# path, and a rule is evaluated once per query while a function is evaluated
# at every call.
annotations_of(o) := a if {
	a := o.metadata.annotations
	is_object(a)
} else := {}

labels_of(o) := l if {
	l := o.metadata.labels
	is_object(l)
} else := {}

annotations := a if {
	a := input.request.object.metadata.annotations
	is_object(a)
} else := {}

labels := l if {
	l := input.request.object.metadata.labels
	is_object(l)
} else := {}

old_annotations := a if {
	a := input.request.oldObject.metadata.annotations
	is_object(a)
} else := {}

old_labels := l if {
	l := input.request.oldObject.metadata.labels
	is_object(l)
} else := {}

# requested(o) holds when o carries at least one request annotation.
requested(o) if {
	some key in request_keys
	_ = annotations_of(o)[key]
}

is_requested if {
	some key in ["nsprov.io/team", "nsprov.io/environment", "nsprov.io/tier", "nsprov.io/network-policy", "nsprov.io/features"]
	_ = annotations[key]
}

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

# nsprov's own identities in this installation (config/install.yaml).
is_manager if username in data.config.install.manager_users

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

team := annotations["nsprov.io/team"]

environment := annotations["nsprov.io/environment"]

tier := t if {
	t := annotations["nsprov.io/tier"]
} else := data.config.environments[environment].default_tier

network_policy := p if {
	p := annotations["nsprov.io/network-policy"]
} else := data.config.network_policies.default

# features_too_long holds when the features annotation is longer than its
# limit (data.config.limits): the validation denies it once
# (annotation-too-long), and the mutation leaves it as it is rather than
# split it.
features_too_long if count(annotations[features_key]) > data.config.limits.annotation_length[features_key]

features := sort({f |
	some part in split(annotations["nsprov.io/features"], ",")
	f := lower(trim_space(part))
	f != ""
})

environment_config := data.config.environments[environment]

tier_config := data.config.tiers[tier]
